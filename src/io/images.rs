//! Turning generated images into pixels people can look at: 8-bit values for IDX files and
//! a grid of digits as a grayscale PNG.

use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::io::atomic::write_atomically;

/// Width in pixels of the border around and between cells.
pub const GAP: usize = 2;
/// The largest width or height of a grid, in pixels: beyond it, viewers and browsers
/// refuse or crawl, and the pixels alone take hundreds of megabytes.
pub const MAX_PNG_SIDE: usize = 16_384;
/// How `sample` lays out digits in a PNG: up to 16 per row, each twice its size.
pub const DIGIT_COLUMNS: usize = 16;
pub const DIGIT_SCALE: usize = 2;
/// The border's grey level: dark, but distinct from a digit's black background. Cells with
/// no image in a last, partly filled row are this colour too.
pub const GAP_GREY: u8 = 64;

/// Maps values in [-1, 1] to bytes: `round((x + 1) / 2 * 255)`, clamped to 0..=255, so
/// -1 -> 0, 0 -> 128 (127.5 rounds away from zero), 1 -> 255. NaN maps to 0 (black) and
/// infinities to the nearest end, so a diverged generator still yields a viewable image.
pub fn to_u8_pixels(images: &[f32]) -> Vec<u8> {
    images.iter().map(|&x| to_u8(x)).collect()
}

fn to_u8(x: f32) -> u8 {
    // `as` saturates and sends NaN to 0, which is the documented mapping.
    ((x + 1.0) / 2.0 * 255.0).round().clamp(0.0, 255.0) as u8
}

/// Lays out `count` single-channel `side x side` images (row-major, one after another, values
/// in [-1, 1]) in a grid of `columns` per row (fewer when `count < columns`), each scaled up
/// `scale` times by pixel repetition, with a [`GAP`]-pixel [`GAP_GREY`] border around every
/// cell. Returns the row-major grayscale pixels, the width and the height.
pub fn grid_pixels(
    images: &[f32],
    count: usize,
    side: usize,
    columns: usize,
    scale: usize,
) -> Result<(Vec<u8>, u32, u32)> {
    let invalid = |message: String| Error::InvalidArgument(format!("image grid: {message}"));
    if count == 0 {
        return Err(invalid("nothing to draw (count is 0)".into()));
    }
    if side == 0 || columns == 0 || scale == 0 {
        return Err(invalid(format!(
            "side ({side}), columns ({columns}) and scale ({scale}) must be positive"
        )));
    }
    let pixels_per_image = side.checked_mul(side);
    if pixels_per_image.and_then(|n| n.checked_mul(count)) != Some(images.len()) {
        return Err(invalid(format!(
            "{} values for {count} images of {side}x{side}",
            images.len()
        )));
    }

    let columns = columns.min(count);
    let rows = count.div_ceil(columns);
    let cell = side.checked_mul(scale);
    // Each of `n` cells plus the border before it, then the closing border.
    let extent = |n: usize| {
        cell.and_then(|c| c.checked_add(GAP))
            .and_then(|c| c.checked_mul(n))
            .and_then(|c| c.checked_add(GAP))
    };
    let (cell, width, height) = match (cell, extent(columns), extent(rows)) {
        (Some(c), Some(w), Some(h)) => (c, w, h),
        _ => {
            return Err(invalid(format!(
                "{count} images of {side}x{side} at scale {scale} do not fit in one PNG"
            )));
        }
    };
    if width > MAX_PNG_SIDE || height > MAX_PNG_SIDE {
        return Err(invalid(format!(
            "{count} images of {side}x{side} at scale {scale} make a {width}x{height} grid, \
             over the {MAX_PNG_SIDE}-pixel limit per side"
        )));
    }
    let (width32, height32) = (width as u32, height as u32);
    let mut grid = vec![GAP_GREY; width * height];

    for (index, image) in images.chunks_exact(side * side).enumerate() {
        let left = GAP + (index % columns) * (cell + GAP);
        let top = GAP + (index / columns) * (cell + GAP);
        for y in 0..cell {
            let source = &image[(y / scale) * side..][..side];
            let row = &mut grid[(top + y) * width + left..][..cell];
            for (x, out) in row.iter_mut().enumerate() {
                *out = to_u8(source[x / scale]);
            }
        }
    }
    Ok((grid, width32, height32))
}

/// Writes the grid of [`grid_pixels`] to `path` as an 8-bit grayscale PNG, atomically (a
/// temporary file renamed into place), creating the parent directory if missing.
pub fn write_grid_png(
    path: &Path,
    images: &[f32],
    count: usize,
    side: usize,
    columns: usize,
    scale: usize,
) -> Result<()> {
    let (pixels, width, height) = grid_pixels(images, count, side, columns, scale)?;
    let encoding_error = |e: png::EncodingError| Error::io(path, io::Error::other(e));
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(encoding_error)?;
    writer.write_image_data(&pixels).map_err(encoding_error)?;
    writer.finish().map_err(encoding_error)?;
    write_atomically(path, &[&bytes])
}

/// The most images of `side` x `side` a grid of `columns` at `scale` holds within
/// [`MAX_PNG_SIDE`].
pub fn grid_capacity(side: usize, columns: usize, scale: usize) -> usize {
    let pitch = side * scale + GAP;
    let fits = |extent: usize| (extent - GAP) / pitch;
    fits(MAX_PNG_SIDE) * columns.min(fits(MAX_PNG_SIDE))
}

/// The two formats `sample` writes digits in, by the output's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitFile {
    /// MNIST's IDX format: names ending in `.idx3-ubyte` or `.idx`.
    Idx,
    /// Anything else: a PNG grid.
    Png,
}

impl DigitFile {
    pub fn of(path: &Path) -> Self {
        let name = path.to_string_lossy();
        if name.ends_with(".idx3-ubyte") || name.ends_with(".idx") {
            DigitFile::Idx
        } else {
            DigitFile::Png
        }
    }
}

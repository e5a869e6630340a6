//! Image output: the pixel mapping, the grid's geometry and placement, the PNG written, and a
//! grid of real MNIST digits.

use std::fs::{self, File};
use std::path::Path;

use gan_gpu::data::{Split, default_data_dir, load_mnist};
use gan_gpu::error::Error;
use gan_gpu::io::images::{GAP, GAP_GREY, grid_pixels, to_u8_pixels, write_grid_png};

/// Decodes an 8-bit grayscale PNG to (pixels, width, height).
fn decode_png(path: &Path) -> (Vec<u8>, u32, u32) {
    let mut reader = png::Decoder::new(std::io::BufReader::new(File::open(path).unwrap()))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.buffer_size());
    (buf, info.width, info.height)
}

/// MNIST bytes mapped to [-1, 1], as the trainer feeds them to the discriminator.
fn to_unit_range(bytes: &[u8]) -> Vec<f32> {
    bytes
        .iter()
        .map(|&b| b as f32 / 255.0 * 2.0 - 1.0)
        .collect()
}

#[test]
fn pixel_mapping() {
    let values = [
        -1.0,
        1.0,
        0.0,
        f32::NAN,
        -3.0,
        7.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.999,
        0.5,
    ];
    // 0 -> 127.5 rounds away from zero to 128; NaN is documented to map to black.
    assert_eq!(
        to_u8_pixels(&values),
        [0, 255, 128, 0, 0, 255, 255, 0, 0, 191]
    );
}

#[test]
fn mapping_inverts_the_byte_to_unit_range_scaling() {
    let bytes: Vec<u8> = (0..=255).collect();
    assert_eq!(to_u8_pixels(&to_unit_range(&bytes)), bytes);
}

#[test]
fn grid_geometry_64_images_8_columns_scale_2() {
    let images = vec![0.0; 64 * 28 * 28];
    let (pixels, width, height) = grid_pixels(&images, 64, 28, 8, 2).unwrap();
    // 8 cells of 56 pixels and 9 borders of GAP.
    let expected = (8 * 56 + 9 * GAP) as u32;
    assert_eq!((width, height), (expected, expected));
    assert_eq!(pixels.len(), (width * height) as usize);
}

#[test]
fn partial_last_row_and_fewer_images_than_columns() {
    // 10 images in rows of 4: 3 rows, the last with 2 images and 2 empty grey cells.
    let images = vec![1.0; 10 * 3 * 3];
    let (pixels, width, height) = grid_pixels(&images, 10, 3, 4, 1).unwrap();
    assert_eq!(
        (width, height),
        ((4 * 3 + 5 * GAP) as u32, (3 * 3 + 4 * GAP) as u32)
    );
    let white = pixels.iter().filter(|&&p| p == 255).count();
    assert_eq!(white, 10 * 9);
    assert!(pixels.iter().all(|&p| p == 255 || p == GAP_GREY));

    // 3 images with 8 columns: one row of 3, not 5 empty cells.
    let (_, width, height) = grid_pixels(&[0.0; 3 * 4], 3, 2, 8, 1).unwrap();
    assert_eq!(
        (width, height),
        ((3 * 2 + 4 * GAP) as u32, (2 + 2 * GAP) as u32)
    );
}

#[test]
fn cell_pixels_land_where_expected() {
    let (count, side, columns, scale) = (7, 5, 3, 3);
    // Every image distinct and every pixel within it distinct.
    let images: Vec<f32> = (0..count * side * side)
        .map(|i| (i % 251) as f32 / 250.0 * 2.0 - 1.0)
        .collect();
    let bytes = to_u8_pixels(&images);
    let (pixels, width, height) = grid_pixels(&images, count, side, columns, scale).unwrap();
    let (width, height) = (width as usize, height as usize);
    let cell = side * scale;
    assert_eq!(width, columns * cell + (columns + 1) * GAP);
    assert_eq!(height, 3 * cell + 4 * GAP);

    let mut covered = vec![false; pixels.len()];
    for i in 0..count {
        let (left, top) = (
            GAP + (i % columns) * (cell + GAP),
            GAP + (i / columns) * (cell + GAP),
        );
        for y in 0..cell {
            for x in 0..cell {
                let at = (top + y) * width + left + x;
                let source = bytes[i * side * side + (y / scale) * side + x / scale];
                assert_eq!(pixels[at], source, "image {i} at ({x}, {y})");
                covered[at] = true;
            }
        }
    }
    // Everything outside the cells is border (or empty cells), all grey.
    for (at, &p) in pixels.iter().enumerate() {
        if !covered[at] {
            assert_eq!(p, GAP_GREY, "pixel ({}, {})", at % width, at / width);
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let images = vec![0.0; 4 * 9];
    for (count, side, columns, scale) in [
        (0, 3, 2, 1),
        (4, 3, 0, 1),
        (4, 3, 2, 0),
        (4, 0, 2, 1),
        (3, 3, 2, 1),
        (5, 3, 2, 1),
        (4, 2, 2, 1),
    ] {
        let err = grid_pixels(&images, count, side, columns, scale).unwrap_err();
        assert!(
            matches!(err, Error::InvalidArgument(_)),
            "{count} {side} {columns} {scale}: {err:?}"
        );
    }
    let err = grid_pixels(&[], 0, 28, 8, 2).unwrap_err();
    assert!(err.to_string().contains("nothing to draw"), "{err}");
    // Dimensions that overflow are refused, not attempted.
    let err = grid_pixels(&[0.0], 1, 1, 1, usize::MAX / 2).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = grid_pixels(&[0.0], 1, 1, 1, 1 << 32).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn written_png_decodes_to_the_grid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("samples/grid.png");
    let images: Vec<f32> = (0..5 * 16).map(|i| (i as f32 * 0.173).sin()).collect();
    write_grid_png(&path, &images, 5, 4, 2, 3).unwrap();
    let expected = grid_pixels(&images, 5, 4, 2, 3).unwrap();
    assert_eq!(decode_png(&path), expected);

    // Overwriting leaves only the new file behind.
    write_grid_png(&path, &images[..16], 1, 4, 2, 3).unwrap();
    assert_eq!(
        decode_png(&path),
        grid_pixels(&images[..16], 1, 4, 2, 3).unwrap()
    );
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["grid.png"]);
}

#[test]
fn invalid_grid_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.png");
    assert!(write_grid_png(&path, &[0.0; 3], 1, 2, 1, 1).is_err());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn mnist_digits_grid_round_trips() {
    let set = load_mnist(&default_data_dir(), Split::Test).unwrap();
    let count = 64;
    let side = set.rows;
    let bytes = &set.images[..count * side * side];
    let images = to_unit_range(bytes);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mnist.png");
    write_grid_png(&path, &images, count, side, 8, 2).unwrap();
    let (pixels, width, height) = decode_png(&path);
    assert_eq!(
        (pixels.clone(), width, height),
        grid_pixels(&images, count, side, 8, 2).unwrap()
    );

    // Digit 9 sits in row 1, column 1; its pixels are the dataset's own bytes, upscaled.
    let cell = side * 2;
    let (left, top) = (GAP + cell + GAP, GAP + cell + GAP);
    let digit = set.image(9);
    for y in 0..cell {
        for x in 0..cell {
            assert_eq!(
                pixels[(top + y) * width as usize + left + x],
                digit[(y / 2) * side + x / 2]
            );
        }
    }

    // Kept for a person to look at; a failure to write it is not the test's concern.
    let _ = write_grid_png(Path::new("/tmp/mnist_grid.png"), &images, count, side, 8, 2);
}

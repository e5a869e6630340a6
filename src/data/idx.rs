//! Reading and writing IDX files, the format MNIST ships in: a big-endian `u32` magic
//! (`0x0000_08RR`, type byte 0x08 = unsigned byte, `RR` = rank), one big-endian `u32` per
//! dimension, then the bytes row-major. Files may be gzip-compressed, as MNIST is distributed.
//!
//! Every check a damaged or wrong file can fail returns `Error::Idx` naming the file and the
//! problem, so a bad download is reported rather than trained on.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::error::{Error, IdxProblem, Result};

/// Which IDX file is expected: the magic it must carry and a description of its dimensions
/// for error messages.
struct Layout {
    magic: u32,
    dims: &'static str,
}

const IMAGES: Layout = Layout {
    magic: 0x0000_0803,
    dims: "3 dimensions (count, rows, cols)",
};
const LABELS: Layout = Layout {
    magic: 0x0000_0801,
    dims: "1 dimension (count)",
};
/// The magic's type byte for unsigned bytes, the only element type MNIST uses.
const U8_TYPE: u32 = 0x08;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Largest data section accepted. MNIST's largest is 47 MB; the cap stops a corrupt header
/// from promising terabytes.
const MAX_DATA_BYTES: usize = 1 << 30;
const MNIST_SIDE: u32 = 28;
const MNIST_CLASSES: u8 = 10;

/// The two halves MNIST is distributed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    /// The prefix of the split's file names, as in `train-images-idx3-ubyte.gz` and
    /// `t10k-labels-idx1-ubyte.gz`.
    pub fn file_stem(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_stem())
    }
}

/// One validated split: `count` images of `rows x cols` bytes each, back to back, and one
/// label in `0..=9` per image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnistSet {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
}

impl MnistSet {
    pub fn pixels_per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`, row-major. Panics when `i >= count`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.pixels_per_image();
        &self.images[i * n..(i + 1) * n]
    }
}

/// Loads one split from `dir`, preferring `<stem>-images-idx3-ubyte.gz` over the uncompressed
/// `<stem>-images-idx3-ubyte` (likewise for labels), and checks that the files hold 28x28
/// images with one label in `0..=9` each.
pub fn load_mnist(dir: &Path, split: Split) -> Result<MnistSet> {
    // Find both files before reading either, so a missing labels file is reported at once
    // rather than after decompressing the images.
    let images_path = find_file(dir, split, "images-idx3-ubyte")?;
    let labels_path = find_file(dir, split, "labels-idx1-ubyte")?;

    let (dims, images) = read_idx(&images_path, &IMAGES)?;
    if dims[1..] != [MNIST_SIDE, MNIST_SIDE] {
        let problem = IdxProblem::WrongDims {
            expected: format!("{MNIST_SIDE}x{MNIST_SIDE} MNIST images"),
            found: dims,
        };
        return Err(Error::idx(images_path, problem));
    }
    let count = dims[0] as usize;

    let labels = read_idx_labels(&labels_path)?;
    if labels.len() != count {
        let problem = IdxProblem::CountMismatch {
            images: count,
            labels: labels.len(),
            labels_file: labels_path.display().to_string(),
        };
        return Err(Error::idx(images_path, problem));
    }

    Ok(MnistSet {
        images,
        labels,
        count,
        rows: MNIST_SIDE as usize,
        cols: MNIST_SIDE as usize,
    })
}

/// The gzip file if present, else the plain one.
fn find_file(dir: &Path, split: Split, kind: &str) -> Result<PathBuf> {
    let plain = dir.join(format!("{split}-{kind}"));
    let gz = dir.join(format!("{split}-{kind}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    if plain.is_file() {
        return Ok(plain);
    }
    let tried = format!("{} or {}", gz.display(), plain.display());
    Err(Error::idx(plain, IdxProblem::Missing { tried }))
}

/// Reads an IDX file of unsigned-byte images of any non-zero size (gzip or plain), returning
/// the pixels with `(count, rows, cols)`.
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, usize, usize, usize)> {
    let (dims, pixels) = read_idx(path, &IMAGES)?;
    Ok((pixels, dims[0] as usize, dims[1] as usize, dims[2] as usize))
}

/// Reads an IDX file of MNIST labels (gzip or plain); every label must be a digit `0..=9`.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let (_, labels) = read_idx(path, &LABELS)?;
    if let Some(index) = labels.iter().position(|&l| l >= MNIST_CLASSES) {
        let problem = IdxProblem::LabelOutOfRange {
            index,
            value: labels[index],
        };
        return Err(Error::idx(path, problem));
    }
    Ok(labels)
}

/// Reads and validates one IDX file, returning its dimensions (exactly the rank `layout`
/// asks for, none zero) and its data.
fn read_idx(path: &Path, layout: &Layout) -> Result<(Vec<u32>, Vec<u8>)> {
    let fail = |problem| Error::idx(path, problem);
    let mut source = Source::open(path)?;

    let head = source.read_up_to(4)?;
    let Ok(head) = <[u8; 4]>::try_from(head.as_slice()) else {
        let expected_rank = (layout.magic & 0xff) as usize;
        return Err(fail(IdxProblem::ShortHeader {
            expected: 4 + 4 * expected_rank,
            found: head.len(),
        }));
    };
    let magic = u32::from_be_bytes(head);
    if magic >> 8 != U8_TYPE {
        return Err(fail(IdxProblem::WrongMagic {
            expected: layout.magic,
            found: magic,
        }));
    }

    // Read the dimensions the file declares even when the rank is wrong, so the error can
    // show them (a labels file passed as images shows up as `[60000]`).
    let rank = (magic & 0xff) as usize;
    let raw = source.read_up_to(4 * rank)?;
    if raw.len() < 4 * rank {
        return Err(fail(IdxProblem::ShortHeader {
            expected: 4 + 4 * rank,
            found: 4 + raw.len(),
        }));
    }
    let dims: Vec<u32> = raw
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if magic != layout.magic {
        return Err(fail(IdxProblem::WrongDims {
            expected: layout.dims.to_string(),
            found: dims,
        }));
    }
    if dims.contains(&0) {
        return Err(fail(IdxProblem::WrongDims {
            expected: format!("{}, none zero", layout.dims),
            found: dims,
        }));
    }
    // Checked, and capped, so an absurd header fails here instead of overflowing or asking
    // for an impossible buffer.
    let Some(expected) = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d as usize))
        .filter(|&n| n <= MAX_DATA_BYTES)
    else {
        return Err(fail(IdxProblem::WrongDims {
            expected: format!("{} totalling at most {MAX_DATA_BYTES} bytes", layout.dims),
            found: dims,
        }));
    };

    let data = source.read_up_to(expected)?;
    if data.len() < expected {
        return Err(fail(IdxProblem::Truncated {
            expected,
            found: data.len(),
        }));
    }
    // Reading to the end also makes the gzip decoder verify its CRC and length trailer.
    let extra = source.count_rest()?;
    if extra > 0 {
        return Err(fail(IdxProblem::TrailingBytes {
            expected,
            extra: usize::try_from(extra).unwrap_or(usize::MAX),
        }));
    }
    Ok((dims, data))
}

/// A file's contents, decompressed on the fly when the file is gzip.
struct Source<'a> {
    path: &'a Path,
    reader: Box<dyn Read>,
    gzip: bool,
}

impl<'a> Source<'a> {
    /// Opens `path`, deciding gzip or plain by the first two bytes: names are not trusted,
    /// since people gunzip files in place or rename them.
    fn open(path: &'a Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                let tried = path.display().to_string();
                Error::idx(path, IdxProblem::Missing { tried })
            } else {
                Error::io(path, e)
            }
        })?;
        let mut magic = Vec::with_capacity(GZIP_MAGIC.len());
        (&mut file)
            .take(GZIP_MAGIC.len() as u64)
            .read_to_end(&mut magic)
            .map_err(|e| Error::io(path, e))?;
        let gzip = magic == GZIP_MAGIC;
        // Put the peeked bytes back in front of the rest of the file.
        let raw = io::Cursor::new(magic).chain(file);
        let reader: Box<dyn Read> = if gzip {
            Box::new(GzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        Ok(Source { path, reader, gzip })
    }

    /// Reads until `n` bytes or the end of the stream. The buffer grows as bytes arrive
    /// instead of reserving `n` up front, so a header that overstates the size of a short
    /// file costs no more memory than the file itself.
    fn read_up_to(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        let read = (&mut self.reader).take(n as u64).read_to_end(&mut buf);
        read.map_err(|e| self.error(e))?;
        Ok(buf)
    }

    /// Consumes the rest of the stream without storing it, returning its length.
    fn count_rest(&mut self) -> Result<u64> {
        let copied = io::copy(&mut self.reader, &mut io::sink());
        copied.map_err(|e| self.error(e))
    }

    /// Read errors from the decoder mean the compressed stream is damaged (bad header,
    /// corrupt deflate data, CRC mismatch, cut short); on a plain file they are I/O errors.
    fn error(&self, e: io::Error) -> Error {
        if self.gzip {
            Error::idx(self.path, IdxProblem::CorruptGzip(e.to_string()))
        } else {
            Error::io(self.path, e)
        }
    }
}

/// Writes `count` images of `rows x cols` bytes as an uncompressed IDX file. The file is
/// written under a temporary name in the same directory and renamed into place, so readers
/// never see a half-written file and a failed write leaves any previous file intact.
pub fn write_idx_images(
    path: &Path,
    images: &[u8],
    count: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let shape_error = |message: String| Error::Shape {
        op: "write_idx_images",
        message,
    };
    // Refuse what `read_idx_images` would refuse, so every file written can be read back.
    let mut header = IMAGES.magic.to_be_bytes().to_vec();
    for d in [count, rows, cols] {
        let d = u32::try_from(d).ok().filter(|&d| d > 0).ok_or_else(|| {
            shape_error(format!(
                "dimensions {count}x{rows}x{cols} must each be in 1..={}",
                u32::MAX
            ))
        })?;
        header.extend_from_slice(&d.to_be_bytes());
    }
    let expected = count.checked_mul(rows).and_then(|n| n.checked_mul(cols));
    if expected != Some(images.len()) {
        return Err(shape_error(format!(
            "{} bytes of pixels for {count} images of {rows}x{cols}",
            images.len()
        )));
    }
    if images.len() > MAX_DATA_BYTES {
        return Err(shape_error(format!(
            "{} bytes of pixels is over the {MAX_DATA_BYTES}-byte limit the reader accepts",
            images.len()
        )));
    }

    crate::io::atomic::write_atomically(path, &[&header, images])
}

//! Reading and writing IDX files, the format MNIST ships in: a big-endian `u32` magic
//! (`0x0000_08RR`, type byte 0x08 = unsigned byte, `RR` = rank), one big-endian `u32` per
//! dimension, then the bytes row-major. Files may be gzip-compressed, as MNIST is distributed.
//!
//! Every check a damaged or wrong file can fail returns `Error::Idx` naming the file and the
//! problem, so a bad download is reported rather than trained on.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::error::{Error, IdxProblem, Result};
use crate::io::atomic::AtomicFile;
use crate::io::files::open_regular;

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

    let (dims, images) = read_idx(&images_path, Source::open(&images_path)?, &IMAGES)?;
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
    images_from(path, Source::open(path)?)
}

/// [`read_idx_images`] on the bytes of a file; `origin` names it in errors.
pub fn parse_idx_images(origin: &Path, bytes: &[u8]) -> Result<(Vec<u8>, usize, usize, usize)> {
    images_from(origin, Source::from_bytes(origin, bytes))
}

fn images_from(path: &Path, source: Source) -> Result<(Vec<u8>, usize, usize, usize)> {
    let (dims, pixels) = read_idx(path, source, &IMAGES)?;
    Ok((pixels, dims[0] as usize, dims[1] as usize, dims[2] as usize))
}

/// Reads an IDX file of MNIST labels (gzip or plain); every label must be a digit `0..=9`.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    labels_from(path, Source::open(path)?)
}

/// [`read_idx_labels`] on the bytes of a file; `origin` names it in errors.
pub fn parse_idx_labels(origin: &Path, bytes: &[u8]) -> Result<Vec<u8>> {
    labels_from(origin, Source::from_bytes(origin, bytes))
}

fn labels_from(path: &Path, source: Source) -> Result<Vec<u8>> {
    let (_, labels) = read_idx(path, source, &LABELS)?;
    if let Some(index) = labels.iter().position(|&l| l >= MNIST_CLASSES) {
        let problem = IdxProblem::LabelOutOfRange {
            index,
            value: labels[index],
        };
        return Err(Error::idx(path, problem));
    }
    Ok(labels)
}

/// Reads and validates one IDX stream, returning its dimensions (exactly the rank `layout`
/// asks for, none zero) and its data.
fn read_idx(path: &Path, mut source: Source, layout: &Layout) -> Result<(Vec<u32>, Vec<u8>)> {
    let fail = |problem| Error::idx(path, problem);
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

    // A plain file's length is known: refuse a short or long one before reading its data.
    if let Some(len) = source.plain_len {
        let header = 4 + 4 * rank as u64;
        let present = len.saturating_sub(header);
        if present < expected as u64 {
            return Err(fail(IdxProblem::Truncated {
                expected,
                found: present as usize,
            }));
        }
        if present > expected as u64 {
            return Err(fail(IdxProblem::TrailingBytes {
                expected,
                extra: usize::try_from(present - expected as u64).unwrap_or(usize::MAX),
            }));
        }
    }
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
    reader: Box<dyn Read + 'a>,
    gzip: bool,
    /// The length of a plain (not gzip) stream.
    plain_len: Option<u64>,
}

impl<'a> Source<'a> {
    /// Opens `path`, which must be a regular file (so `/dev/zero` or a FIFO is refused
    /// rather than read forever).
    fn open(path: &'a Path) -> Result<Self> {
        let (file, len) = open_regular(path, || {
            let tried = path.display().to_string();
            Error::idx(path, IdxProblem::Missing { tried })
        })?;
        Self::new(path, file, len)
    }

    fn from_bytes(path: &'a Path, bytes: &'a [u8]) -> Self {
        let len = bytes.len() as u64;
        Self::new(path, bytes, len).expect("reading from memory cannot fail")
    }

    /// Decides gzip or plain by the first two bytes: names are not trusted, since people
    /// gunzip files in place or rename them.
    fn new(path: &'a Path, mut raw: impl Read + 'a, len: u64) -> Result<Self> {
        let mut magic = Vec::with_capacity(GZIP_MAGIC.len());
        (&mut raw)
            .take(GZIP_MAGIC.len() as u64)
            .read_to_end(&mut magic)
            .map_err(|e| Error::io(path, e))?;
        let gzip = magic == GZIP_MAGIC;
        // Put the peeked bytes back in front of the rest of the file.
        let raw = io::Cursor::new(magic).chain(raw);
        let (reader, plain_len): (Box<dyn Read + 'a>, _) = if gzip {
            (Box::new(GzDecoder::new(raw)), None)
        } else {
            (Box::new(raw), Some(len))
        };
        Ok(Source {
            path,
            reader,
            gzip,
            plain_len,
        })
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

/// Writes `count` images of `rows x cols` bytes as an uncompressed IDX file, atomically
/// (see [`crate::io::atomic`]): readers never see a half-written file and a failed write
/// leaves any previous file intact.
pub fn write_idx_images(
    path: &Path,
    images: &[u8],
    count: usize,
    rows: usize,
    cols: usize,
) -> Result<()> {
    let mut writer = IdxImageWriter::create(path, count, rows, cols)?;
    writer.write(images)?;
    writer.finish()
}

/// An IDX file of images written a chunk at a time, so any number of images takes the
/// memory of one chunk. The header is written first; [`IdxImageWriter::finish`] checks
/// that exactly the promised bytes came and puts the file in place.
pub struct IdxImageWriter {
    file: AtomicFile,
    remaining: u64,
    shape: String,
}

impl IdxImageWriter {
    /// Each dimension must be in `1..=u32::MAX`, what the format can hold and the reader
    /// accepts. (Reading a file back whole is limited to 1 GiB of pixels; writing is not.)
    pub fn create(path: &Path, count: usize, rows: usize, cols: usize) -> Result<Self> {
        let shape = format!("{count}x{rows}x{cols}");
        let mut header = IMAGES.magic.to_be_bytes().to_vec();
        for d in [count, rows, cols] {
            let d = u32::try_from(d).ok().filter(|&d| d > 0).ok_or_else(|| {
                shape_error(format!(
                    "dimensions {shape} must each be in 1..={} (IDX stores them as u32)",
                    u32::MAX
                ))
            })?;
            header.extend_from_slice(&d.to_be_bytes());
        }
        // At most 2^96, so u128 cannot overflow.
        let total = count as u128 * rows as u128 * cols as u128;
        let remaining = u64::try_from(total)
            .map_err(|_| shape_error(format!("{shape} images do not fit in one file")))?;
        let mut file = AtomicFile::create(path)?;
        file.write_all(&header)?;
        Ok(IdxImageWriter {
            file,
            remaining,
            shape,
        })
    }

    /// Appends the pixels of whole or partial images.
    pub fn write(&mut self, pixels: &[u8]) -> Result<()> {
        let n = pixels.len() as u64;
        if n > self.remaining {
            return Err(shape_error(format!(
                "more pixels than the {} images the header promises",
                self.shape
            )));
        }
        self.remaining -= n;
        self.file.write_all(pixels)
    }

    pub fn finish(self) -> Result<()> {
        if self.remaining > 0 {
            return Err(shape_error(format!(
                "{} bytes of pixels short of the {} images the header promises",
                self.remaining, self.shape
            )));
        }
        self.file.commit()
    }
}

fn shape_error(message: String) -> Error {
    Error::Shape {
        op: "write_idx_images",
        message,
    }
}

//! The library's one error type. Every variant names what failed and, where it helps,
//! what the user can do about it.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("MNIST data file {}: {problem}", path.display())]
    Idx { path: PathBuf, problem: IdxProblem },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "no wgpu adapter found{filter}. Install a GPU driver, or Mesa's software Vulkan \
         driver (on Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`); \
         `--device cpu` runs without any adapter"
    )]
    NoAdapter { filter: String },

    #[error("adapter {adapter:?} refused to create a device: {reason}")]
    RequestDevice { adapter: String, reason: String },

    #[error("GPU error while {context}: {message}")]
    Gpu { context: String, message: String },

    #[error("GPU device lost ({reason}): {message}")]
    DeviceLost { reason: String, message: String },

    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },

    #[error("checkpoint {}: {problem}", path.display())]
    Checkpoint { path: PathBuf, problem: String },

    #[error("training stopped at iteration {iteration}: {what} is {value}")]
    NonFinite {
        iteration: u64,
        what: String,
        value: f32,
    },

    /// A run folder that cannot be used as asked: in use, already holding a run, or with
    /// nothing to resume.
    #[error("run folder {}: {problem}", dir.display())]
    RunFolder { dir: PathBuf, problem: String },

    /// A size that a flag or a file sets is more than the operation can hold.
    #[error("{what}: {problem}")]
    TooLarge { what: String, problem: String },

    #[error("{}: is {kind}, not a regular file{hint}", path.display())]
    NotARegularFile {
        path: PathBuf,
        kind: &'static str,
        hint: String,
    },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error(
        "the selftest failed on {adapter}: {} failing check(s): {}{advice}",
        failing.len(),
        failing.join("; ")
    )]
    Selftest {
        adapter: String,
        failing: Vec<String>,
        /// What the user can do, for the caller that refused to go on.
        advice: String,
    },

    #[error("ONNX export: {0}")]
    OnnxExport(String),
}

/// What is wrong with an IDX file; the `Error::Idx` variant adds the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdxProblem {
    #[error("file not found (looked for {tried})")]
    Missing { tried: String },
    #[error("not a valid gzip stream: {0}")]
    CorruptGzip(String),
    #[error("header is {found} bytes, shorter than the {expected}-byte IDX header")]
    ShortHeader { expected: usize, found: usize },
    #[error("wrong magic number: expected {expected:#010x}, found {found:#010x}")]
    WrongMagic { expected: u32, found: u32 },
    #[error("wrong dimensions: expected {expected}, found {found:?}")]
    WrongDims { expected: String, found: Vec<u32> },
    #[error("truncated data: the header promises {expected} bytes of data, the file has {found}")]
    Truncated { expected: usize, found: usize },
    #[error("{extra} trailing bytes after the {expected} bytes of data the header promises")]
    TrailingBytes { expected: usize, extra: usize },
    #[error("{images} images but {labels} labels in {labels_file}")]
    CountMismatch {
        images: usize,
        labels: usize,
        labels_file: String,
    },
    #[error("label {value} at index {index} is outside 0..=9")]
    LabelOutOfRange { index: usize, value: u8 },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn idx(path: impl Into<PathBuf>, problem: IdxProblem) -> Self {
        Error::Idx {
            path: path.into(),
            problem,
        }
    }
}

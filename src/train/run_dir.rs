//! Where a run keeps its files.

use std::path::PathBuf;

pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    pub fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint.safetensors")
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn losses(&self) -> PathBuf {
        self.root.join("loss.csv")
    }
    pub fn samples(&self) -> PathBuf {
        self.root.join("samples")
    }
    pub fn sample(&self, iteration: u64) -> PathBuf {
        self.samples().join(format!("iter_{iteration:06}.png"))
    }
    /// The same grid drawn by the moving average of the generator.
    pub fn ema_sample(&self, iteration: u64) -> PathBuf {
        self.samples().join(format!("iter_{iteration:06}_ema.png"))
    }
}

//! loss.csv as `plot` reads and draws it, and as `train --resume` cuts it back to its
//! checkpoint.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use gan_gpu::model::Model;
use gan_gpu::train::log::{LossSchema, parse_columns, rows_through};
use gan_gpu::train::{TrainConfig, plot};
use libfuzzer_sys::fuzz_target;

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let config = TrainConfig::default();
        config
            .model_kind()
            .unwrap()
            .build(&config.model_config())
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("loss.csv");
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((header, columns)) = parse_columns(path, text) {
        assert_eq!(header.len(), columns.len());
        if let Ok(chart) = plot::chart(path, &header, &columns) {
            plot::render_svg(&chart).expect("a chart of finite points draws");
        }
    }
    for through in [0, 1, 7, u64::MAX] {
        if let Ok(keep) = rows_through(path, text, through) {
            assert!(keep <= text.len() && text.is_char_boundary(keep));
        }
    }
    let _ = LossSchema::from_header(model(), text.lines().next().unwrap_or_default());
});

//! Every `shaders/*.wgsl` parses and validates with naga, and every WGSL `Params`
//! struct has the same size as its Rust twin. Runs without any GPU adapter.

use std::collections::BTreeMap;
use std::path::Path;

use gan_gpu::gpu::Shader;

fn validate(name: &str, source: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: WGSL parse error:\n{}", e.emit_to_string(source)));
    // No optional capabilities: we request none from the device.
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| {
        panic!(
            "{name}: WGSL validation error:\n{}",
            e.emit_to_string(source)
        )
    });
    module
}

#[test]
fn every_shader_file_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wgsl") {
            let source = std::fs::read_to_string(&path).unwrap();
            validate(&path.display().to_string(), &source);
            count += 1;
        }
    }
    assert!(count > 0, "no shaders found in {}", dir.display());
}

#[test]
fn every_shader_file_is_registered_and_embedded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    for name in &on_disk {
        let shader = Shader::ALL
            .iter()
            .find(|s| s.file_name() == name)
            .unwrap_or_else(|| panic!("shaders/{name} is not listed in Shader::ALL"));
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(shader.source(), text, "embedded {name} is stale");
    }
    assert_eq!(on_disk.len(), Shader::ALL.len());
}

/// Sizes of every struct in the module, by name.
fn struct_sizes(module: &naga::Module) -> BTreeMap<String, u32> {
    module
        .types
        .iter()
        .filter_map(|(_, ty)| match &ty.inner {
            naga::TypeInner::Struct { span, .. } => Some((ty.name.clone()?, *span)),
            _ => None,
        })
        .collect()
}

#[test]
fn params_structs_match_their_rust_twins() {
    let twins = gan_gpu::kernels::params_twins();
    for (shader, name, rust_size) in twins {
        let sizes = struct_sizes(&validate(shader.file_name(), shader.source()));
        let wgsl_size = sizes
            .get(name)
            .unwrap_or_else(|| panic!("{}: no struct {name}", shader.file_name()));
        assert_eq!(
            *wgsl_size as usize,
            rust_size,
            "{}::{name} is {wgsl_size} bytes in WGSL, {rust_size} in Rust",
            shader.file_name()
        );
    }
}

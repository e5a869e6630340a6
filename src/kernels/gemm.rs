//! Launchers for `shaders/gemm.wgsl`: row-major GEMM with optional transposes, bias and
//! accumulation (the Dense layer and its gradients), and the bias-gradient reduction.
//!
//! Two GEMM kernels compute the same thing: `gemm_tiled` stages tiles in workgroup
//! memory (what real GPUs want), `gemm_register` gives each invocation a large register
//! tile and uses no workgroup memory or barriers (what CPU adapters such as llvmpipe
//! want, where barriers are very slow). [`GemmVariant::Auto`] picks by the context's
//! [`KernelSettings`].

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{
    Binding, Dispatch, Footprint, GpuBuffer, GpuContext, KernelSettings, KernelSpec, Knobs, Shader,
};

/// Twin of `Params` in `shaders/gemm.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub accumulate: u32,
    pub a_stride_m: u32,
    pub a_stride_k: u32,
    pub b_stride_k: u32,
    pub b_stride_n: u32,
    pub c_stride_m: u32,
    pub c_stride_n: u32,
    pub bias_stride_m: u32,
    pub bias_stride_n: u32,
    pub has_bias: u32,
    pub _pad: [u32; 3],
}

/// Twin of `BiasGradParams` in `shaders/gemm.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub struct BiasGradParams {
    pub rows: u32,
    pub cols: u32,
    pub accumulate: u32,
    pub chunk_rows: u32,
}

pub const PARAMS_TWINS: &[super::ParamsTwin] = &[
    (Shader::Gemm, "Params", std::mem::size_of::<GemmParams>()),
    (
        Shader::Gemm,
        "BiasGradParams",
        std::mem::size_of::<BiasGradParams>(),
    ),
];

/// `C (m, n) = op(A) (m, k) · op(B) (k, n)`, all row-major: A is stored (m, k), or (k, m)
/// when `trans_a`; B is stored (k, n), or (n, k) when `trans_b`. With `accumulate` the
/// product is added to C instead of overwriting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub accumulate: bool,
}

/// Which GEMM kernel to run; both compute the same result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GemmVariant {
    /// `Register` under the software settings, `Tiled` under the real-GPU ones.
    #[default]
    Auto,
    /// Workgroup-memory tiles with a 4x4 register tile per invocation.
    Tiled,
    /// A large register tile per invocation, no workgroup memory.
    Register,
    /// One workgroup per output, its invocations splitting k (thin products, long k).
    Dot,
}

/// FLOPs of one product, counting a multiply-add as two: `2·m·n·k`.
pub fn gemm_flops(shape: &GemmShape) -> f64 {
    2.0 * shape.m as f64 * shape.n as f64 * shape.k as f64
}

/// params, A, B, bias, C, then A and B again for the shader's vec4 views.
const GEMM_BINDINGS: &[Binding] = &[
    Binding::Uniform,
    Binding::Read,
    Binding::Read,
    Binding::Read,
    Binding::ReadWrite,
    Binding::Read,
    Binding::Read,
];

/// `gemm_tiled`: a 16x16 workgroup with 4x4 outputs each (64x64 blocks), K steps of 16:
/// 8 KiB of workgroup memory, 4 loads per invocation per operand and step.
const TILED_WG: u32 = 16;
const TILED_BK: u32 = 16;
const TILED_SIDE: usize = TILED_WG as usize * 4;
/// The K steps `gan-gpu tune` tries; 32 fills WebGPU's 16 KiB of workgroup memory.
const TILED_BK_CHOICES: [u32; 3] = [8, 16, 32];

/// `gemm_register*`: 8x8 invocations of 16x8 outputs by default, so a 128x64 block.
/// Measured on llvmpipe (8 invocations per SIMD op): a per-invocation load costs about
/// as much as 8 scalar loads whatever its width, so each loaded value should feed many
/// FMAs, and vec4 loads cut the load count by 4. 16x8 beat 8x8, 8x16, 16x16 and 32x8 at
/// 512^3; larger tiles spill without gaining. Other shapes prefer fewer rows (`REG_TM`
/// 4 or 8, which `gan-gpu tune` tries): a 100-row product wastes 28 of 128 rows.
const REGISTER_WG: (u32, u32) = (8, 8);
const REGISTER_ROWS: u32 = 16;
const REGISTER_ROW_CHOICES: [u32; 3] = [4, 8, 16];
/// `gemm_register_thin*` (n < 8): 16 invocations of 4 rows x 1 column; small blocks so
/// the 100 rows of a batch still spread over several workgroups (CPU threads).
const THIN_WG: u32 = 16;
const THIN_BLOCK: (usize, usize) = (THIN_WG as usize * 4, 1);

/// `gemm_dot`'s workgroup: a power of two (its tree halves it).
const DOT_WG: u32 = 64;

/// Whether the GPU settings run `shape` as `gemm_dot`: the 64x64 tiles of `gemm_tiled`
/// would leave a thin output (a side under 8) on a few workgroups each walking all of
/// a long k, where one workgroup per output splits k 64 ways.
fn dot_fits(shape: &GemmShape) -> bool {
    shape.m.min(shape.n) < 8 && shape.k >= 256 && shape.m * shape.n <= 1 << 16
}

/// Records `C = op(A)·op(B) (+ bias[n] on every row) (+ C)` for `shape`; `bias`, when
/// given, holds n values. Buffers hold f32, row-major, at least as long as the shape needs.
pub fn gemm(
    ctx: &GpuContext,
    shape: &GemmShape,
    a: &GpuBuffer,
    b: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    c: &GpuBuffer,
    variant: GemmVariant,
) -> Result<Dispatch> {
    let &GemmShape {
        m,
        n,
        k,
        trans_a,
        trans_b,
        accumulate,
    } = shape;
    let describe = format!(
        "{m}x{n}x{k} ({}{})",
        if trans_a { "T" } else { "N" },
        if trans_b { "T" } else { "N" }
    );
    let shape_error = |message: String| Error::Shape {
        op: "gemm",
        message: format!("{describe}: {message}"),
    };
    let mut params = checked_params(ctx, shape, (a, b, bias, c)).map_err(shape_error)?;

    let settings = ctx.kernel_settings();
    let variant = match variant {
        GemmVariant::Auto if settings == KernelSettings::Software => GemmVariant::Register,
        GemmVariant::Auto if dot_fits(shape) => GemmVariant::Dot,
        GemmVariant::Auto => GemmVariant::Tiled,
        chosen => chosen,
    };
    if variant == GemmVariant::Dot {
        return gemm_dot(ctx, shape, &params, (a, b, bias, c), shape_error);
    }
    let register = variant == GemmVariant::Register;
    let mut operands = (a, b);
    // (entry, constants, outputs per workgroup, workgroup size, loop iterations for the
    // loop limit, trips of the k loop)
    let (entry, constants, block, workgroup_size, loop_iterations, k_trips) = if register {
        // Cᵀ = op(B)ᵀ·op(A)ᵀ: swapping the roles turns a short-and-wide product into a
        // tall-and-thin one, and TT into NN (vec4 loads for both operands).
        if (m < 8 && n > m) || (trans_a && trans_b) {
            params = swapped(&params);
            operands = (b, a);
        }
        let vec4_a = params.a_stride_k == 1 && params.a_stride_m.is_multiple_of(4);
        let vec4_b = params.b_stride_n == 1
            && params.b_stride_k.is_multiple_of(4)
            && params.n.is_multiple_of(4);
        let thin_vec4_k = vec4_a
            && params.b_stride_k == 1
            && (params.n == 1 || params.b_stride_n.is_multiple_of(4));
        let thin_vec4_rows = params.a_stride_m == 1 && params.a_stride_k.is_multiple_of(4);
        let entry = match (params.n < 8, vec4_a, vec4_b) {
            (true, _, _) if thin_vec4_k => "gemm_register_thin_vec4_k",
            (true, _, _) if thin_vec4_rows => "gemm_register_thin_vec4_rows",
            (true, _, _) => "gemm_register_thin",
            (false, false, false) => "gemm_register",
            (false, true, false) => "gemm_register_vec4_a",
            (false, false, true) => "gemm_register_vec4_b",
            (false, true, true) => "gemm_register_vec4_ab",
        };
        let rows = if params.n < 8 {
            REGISTER_ROWS
        } else {
            let site = format!("{entry} {}", site_shape(shape));
            let knob = |rows| Knobs {
                tile_rows: Some(rows),
                ..Knobs::default()
            };
            let knobs = tuned(ctx, &site, &REGISTER_ROW_CHOICES, REGISTER_ROWS, knob);
            chosen(knobs.tile_rows, &REGISTER_ROW_CHOICES, REGISTER_ROWS)
        };
        let block = if params.n < 8 {
            THIN_BLOCK
        } else {
            (
                REGISTER_WG.1 as usize * rows as usize,
                8 * REGISTER_WG.0 as usize,
            )
        };
        let constants = vec![
            ("REG_WG_X", REGISTER_WG.0 as f64),
            ("REG_WG_Y", REGISTER_WG.1 as f64),
            ("REG_TM", rows as f64),
            ("THIN_WG", THIN_WG as f64),
        ];
        let workgroup_size = if params.n < 8 {
            [1, THIN_WG, 1]
        } else {
            [REGISTER_WG.0, REGISTER_WG.1, 1]
        };
        // The k loop steps 4 at a time and is the only loop that scales with the shape.
        (
            entry,
            constants,
            block,
            workgroup_size,
            k.div_ceil(4),
            k.div_ceil(4),
        )
    } else {
        let site = format!("gemm_tiled {}", site_shape(shape));
        let knob = |bk| Knobs {
            k_step: Some(bk),
            ..Knobs::default()
        };
        let knobs = tuned(ctx, &site, &TILED_BK_CHOICES, TILED_BK, knob);
        let bk = chosen(knobs.k_step, &TILED_BK_CHOICES, TILED_BK);
        let constants = vec![("TILED_WG", TILED_WG as f64), ("TILED_BK", bk as f64)];
        // Per K step: the step loop, two tile-load loops (bk x side elements over the
        // workgroup's invocations) and the TILED_BK loop.
        let loads = (bk as usize * TILED_SIDE).div_ceil((TILED_WG * TILED_WG) as usize);
        let per_step = 1 + 2 * loads + bk as usize;
        let iterations = k.div_ceil(bk as usize) * per_step;
        (
            "gemm_tiled",
            constants,
            (TILED_SIDE, TILED_SIDE),
            [TILED_WG, TILED_WG, 1],
            iterations,
            k.div_ceil(bk as usize),
        )
    };
    // llvmpipe silently stops an invocation's loops past its limit: refused instead.
    if let Some(message) = ctx.loop_limit_exceeded(loop_iterations) {
        return Err(shape_error(format!(
            "{entry}: {message}; split k into chunks accumulated in C"
        )));
    }

    let groups = [
        (params.n as usize).div_ceil(block.1),
        (params.m as usize).div_ceil(block.0),
    ];
    let max = ctx.limits.max_compute_workgroups_per_dimension as usize;
    if groups.iter().any(|&g| g > max) {
        return Err(shape_error(format!(
            "needs {}x{} workgroups of {}x{} outputs, the device allows {max} per dimension",
            groups[0], groups[1], block.0, block.1
        )));
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Gemm,
        entry,
        bindings: GEMM_BINDINGS,
        constants: &constants,
    })?;
    let uniform = ctx.uniform("gemm params", &params);
    // A vec4 view needs a binding of at least 16 bytes even where it is not read: a
    // shorter operand (k = 0, or a 1-3 element matrix) never takes the vec4 path, so a
    // placeholder stands in for its view.
    let short = |buffer: &GpuBuffer| buffer.size() < 16;
    let placeholder =
        (short(operands.0) || short(operands.1)).then(|| ctx.storage("gemm vec4 placeholder", 16));
    let vec4_view = |buffer| {
        placeholder
            .as_ref()
            .filter(|_| short(buffer))
            .unwrap_or(buffer)
    };
    // Without a bias the shader never reads binding 3; A stands in for it.
    let bind_group = ctx.bind(
        &kernel,
        &[
            &uniform,
            operands.0,
            operands.1,
            bias.unwrap_or(a),
            c,
            vec4_view(operands.0),
            vec4_view(operands.1),
        ],
    );
    let c_passes = 1 + accumulate as usize;
    let bias_len = if bias.is_some() { n } else { 0 };
    let bytes = 4 * (m * k + k * n + c_passes * m * n + bias_len);
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [groups[0] as u32, groups[1] as u32, 1],
        footprint: Footprint {
            workgroup_size,
            longest_loop: k_trips as u64,
            flops: gemm_flops(shape),
            bytes: bytes as f64,
        },
    })
}

/// `gemm_dot` for `shape` with `params` (already checked): one workgroup per output.
fn gemm_dot(
    ctx: &GpuContext,
    shape: &GemmShape,
    params: &GemmParams,
    (a, b, bias, c): (&GpuBuffer, &GpuBuffer, Option<&GpuBuffer>, &GpuBuffer),
    shape_error: impl Fn(String) -> Error,
) -> Result<Dispatch> {
    let &GemmShape { m, n, k, .. } = shape;
    let trips = k.div_ceil(DOT_WG as usize);
    // The k walk, then the tree's halvings.
    if let Some(message) = ctx.loop_limit_exceeded(trips + DOT_WG.ilog2() as usize) {
        return Err(shape_error(format!("gemm_dot: {message}")));
    }
    let outputs = u32::try_from(m * n)
        .map_err(|_| shape_error("gemm_dot: too many outputs for one grid".into()))?;
    let (gx, gy) = crate::gpu::pipeline::grid_1d(ctx, outputs);
    if gy > ctx.limits.max_compute_workgroups_per_dimension {
        return Err(shape_error(format!(
            "gemm_dot: {outputs} outputs need more workgroups than the device allows"
        )));
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Gemm,
        entry: "gemm_dot",
        bindings: GEMM_BINDINGS,
        constants: &[("DOT_WG", DOT_WG as f64)],
    })?;
    let uniform = ctx.uniform("gemm params", params);
    // gemm_dot never reads the vec4 views or, without a bias, binding 3: A stands in
    // (a vec4 view needs 16 bytes, which a short A lacks).
    let placeholder = (a.size() < 16).then(|| ctx.storage("gemm vec4 placeholder", 16));
    let view = placeholder.as_ref().unwrap_or(a);
    let bind_group = ctx.bind(&kernel, &[&uniform, a, b, bias.unwrap_or(a), c, view, view]);
    let c_passes = 1 + shape.accumulate as usize;
    let bias_len = if bias.is_some() { n } else { 0 };
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [gx, gy, 1],
        footprint: Footprint {
            workgroup_size: [DOT_WG, 1, 1],
            longest_loop: trips.max(DOT_WG.ilog2() as usize) as u64,
            flops: gemm_flops(shape),
            bytes: (4 * (m * k + k * n + c_passes * m * n + bias_len)) as f64,
        },
    })
}

/// The uniform of `shape` over buffers that were checked to hold it (and to bind whole),
/// or what is wrong.
pub(super) fn checked_params(
    ctx: &GpuContext,
    shape: &GemmShape,
    (a, b, bias, c): (&GpuBuffer, &GpuBuffer, Option<&GpuBuffer>, &GpuBuffer),
) -> std::result::Result<GemmParams, String> {
    let &GemmShape {
        m,
        n,
        k,
        trans_a,
        trans_b,
        accumulate,
    } = shape;
    let fits_u32 = |x: Option<usize>| x.is_some_and(|x| x <= u32::MAX as usize);
    if ![
        Some(m),
        Some(n),
        Some(k),
        m.checked_mul(k),
        k.checked_mul(n),
        m.checked_mul(n),
    ]
    .into_iter()
    .all(fits_u32)
    {
        return Err("dimensions overflow u32 indexing".into());
    }
    check_buffer(ctx, "A", a, m * k)?;
    check_buffer(ctx, "B", b, k * n)?;
    check_buffer(ctx, "C", c, m * n)?;
    if let Some(bias) = bias {
        check_buffer(ctx, "bias", bias, n)?;
    }

    let (m32, n32, k32) = (m as u32, n as u32, k as u32);
    Ok(GemmParams {
        m: m32,
        n: n32,
        k: k32,
        accumulate: accumulate as u32,
        a_stride_m: if trans_a { 1 } else { k32 },
        a_stride_k: if trans_a { m32 } else { 1 },
        b_stride_k: if trans_b { 1 } else { n32 },
        b_stride_n: if trans_b { k32 } else { 1 },
        c_stride_m: n32,
        c_stride_n: 1,
        bias_stride_m: 0,
        bias_stride_n: 1,
        has_bias: bias.is_some() as u32,
        _pad: [0; 3],
    })
}

/// The same product computed as Cᵀ = op(B)ᵀ·op(A)ᵀ (C written through swapped strides).
fn swapped(p: &GemmParams) -> GemmParams {
    GemmParams {
        m: p.n,
        n: p.m,
        a_stride_m: p.b_stride_n,
        a_stride_k: p.b_stride_k,
        b_stride_k: p.a_stride_k,
        b_stride_n: p.a_stride_m,
        c_stride_m: p.c_stride_n,
        c_stride_n: p.c_stride_m,
        bias_stride_m: p.bias_stride_n,
        bias_stride_n: p.bias_stride_m,
        ..*p
    }
}

/// Checks that `buffer` holds `len` f32 and can be bound whole.
fn check_buffer(
    ctx: &GpuContext,
    name: &str,
    buffer: &GpuBuffer,
    len: usize,
) -> std::result::Result<(), String> {
    let need = len as u64 * 4;
    if buffer.size() < need {
        return Err(format!(
            "{name} needs {len} f32 ({need} bytes), the buffer holds {} bytes",
            buffer.size()
        ));
    }
    let limit = ctx.limits.max_storage_buffer_binding_size;
    if buffer.size() > limit {
        return Err(format!(
            "{name} buffer is {} bytes, over the device's {limit}-byte storage binding limit",
            buffer.size()
        ));
    }
    Ok(())
}

/// Workgroups a bias gradient should spread over: a real GPU wants many (the plan's
/// width rule asks for at least 128 wherever a dispatch moves over 1 MB), a software
/// adapter one per CPU thread or so.
fn bias_grad_workgroups(ctx: &GpuContext) -> usize {
    match ctx.kernel_settings() {
        KernelSettings::Gpu => 256,
        KernelSettings::Software => 16,
    }
}

/// Records `db[j] = Σ_r dy[r, j]` (+ `db[j]` with `accumulate`) for dy (rows, cols)
/// row-major: the bias gradient of a Dense layer (rows = batch) or of a convolution over
/// NHWC (rows = batch·H·W, cols = channels).
///
/// Where the columns alone give too few workgroups, the rows are cut into chunks summed
/// by separate workgroups into a (chunks, cols) scratch buffer, which a second dispatch
/// of the same kernel sums into db: two stages, each short and wide.
pub fn bias_grad(
    ctx: &GpuContext,
    dy: &GpuBuffer,
    rows: usize,
    cols: usize,
    db: &GpuBuffer,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let shape_error = |message: String| Error::Shape {
        op: "bias_grad",
        message: format!("{rows}x{cols}: {message}"),
    };
    if rows.checked_mul(cols).is_none_or(|x| x > u32::MAX as usize) {
        return Err(shape_error("dimensions overflow u32 indexing".into()));
    }
    check_buffer(ctx, "dy", dy, rows * cols).map_err(shape_error)?;
    check_buffer(ctx, "db", db, cols).map_err(shape_error)?;
    let (wg_cols, wg_rows) = bias_grad_workgroup(rows, cols);
    let col_groups = cols.div_ceil(wg_cols as usize).max(1);
    // Each chunk keeps at least two trips of four rows per invocation.
    let per_trip = 4 * wg_rows as usize;
    let most = rows.div_ceil(2 * per_trip).max(1);
    let mut chunks = (bias_grad_workgroups(ctx) / col_groups).clamp(1, most);
    if let Some(limit) = ctx.loop_limit() {
        // Stay well under llvmpipe's loop limit however long the reduction.
        let longest_chunk = per_trip * (limit / 2);
        chunks = chunks.max(rows.div_ceil(longest_chunk));
    }
    let chunk_rows = rows.div_ceil(chunks).max(1);
    let chunks = rows.div_ceil(chunk_rows).max(1);
    if chunks == 1 {
        return Ok(vec![bias_grad_pass(
            ctx, dy, rows, cols, rows, db, accumulate,
        )?]);
    }
    if chunks * cols > u32::MAX as usize {
        return Err(shape_error("partial sums overflow u32 indexing".into()));
    }
    let partials = ctx.storage("bias grad partial sums", (chunks * cols * 4) as u64);
    Ok(vec![
        bias_grad_pass(ctx, dy, rows, cols, chunk_rows, &partials, false)?,
        bias_grad_pass(ctx, &partials, chunks, cols, chunks, db, accumulate)?,
    ])
}

/// Rows up to which a wide bias gradient takes 16-column workgroups: 4 trips of four rows
/// for each of their 16 row groups.
const SHORT_BIAS_ROWS: usize = 256;

/// (columns, row groups) of a 256-invocation bias-gradient workgroup: narrow outputs
/// trade columns for more row groups, and so do short wide ones (a dense layer's batch),
/// whose columns alone then give enough workgroups for one stage.
fn bias_grad_workgroup(rows: usize, cols: usize) -> (u32, u32) {
    let wg_cols: u32 = match cols {
        0..=8 => 8,
        9..=1023 => 16,
        _ if rows <= SHORT_BIAS_ROWS => 16,
        _ => 64,
    };
    (wg_cols, 256 / wg_cols)
}

/// One `bias_grad` dispatch: chunk c of `chunk_rows` rows of dy (rows, cols) summed into
/// row c of out (+ out with `accumulate`).
fn bias_grad_pass(
    ctx: &GpuContext,
    dy: &GpuBuffer,
    rows: usize,
    cols: usize,
    chunk_rows: usize,
    out: &GpuBuffer,
    accumulate: bool,
) -> Result<Dispatch> {
    let shape_error = |message: String| Error::Shape {
        op: "bias_grad",
        message: format!("{rows}x{cols}: {message}"),
    };
    let (wg_cols, wg_rows) = bias_grad_workgroup(rows, cols);
    // The row walk takes four rows per iteration, then up to 3 single rows; then the
    // final sum over row groups.
    let row_trips = chunk_rows / (4 * wg_rows as usize) + 3;
    let loop_iterations = row_trips + wg_rows as usize;
    if let Some(message) = ctx.loop_limit_exceeded(loop_iterations) {
        return Err(shape_error(message));
    }
    let groups = cols.div_ceil(wg_cols as usize);
    let chunks = rows.div_ceil(chunk_rows.max(1)).max(1);
    let max = ctx.limits.max_compute_workgroups_per_dimension as usize;
    if groups > max || chunks > max {
        return Err(shape_error(format!(
            "{groups}x{chunks} workgroups exceed the device's per-dimension limit"
        )));
    }
    let kernel = ctx.kernel(&KernelSpec {
        shader: Shader::Gemm,
        entry: "bias_grad",
        bindings: &[Binding::Uniform, Binding::Read, Binding::ReadWrite],
        constants: &[("BG_COLS", wg_cols as f64), ("BG_ROWS", wg_rows as f64)],
    })?;
    let params = BiasGradParams {
        rows: rows as u32,
        cols: cols as u32,
        accumulate: accumulate as u32,
        chunk_rows: chunk_rows as u32,
    };
    let uniform = ctx.uniform("bias_grad params", &params);
    let bind_group = ctx.bind(&kernel, &[&uniform, dy, out]);
    let c_passes = chunks * (1 + accumulate as usize);
    Ok(Dispatch {
        kernel,
        bind_group,
        groups: [groups as u32, chunks as u32, 1],
        footprint: Footprint {
            workgroup_size: [wg_cols, wg_rows, 1],
            longest_loop: row_trips.max(wg_rows as usize) as u64,
            flops: (rows * cols) as f64,
            bytes: (4 * (rows * cols + c_passes * cols)) as f64,
        },
    })
}

/// A GEMM's shape as its tuning sites name it, e.g. `100x6272x100 NN`.
fn site_shape(shape: &GemmShape) -> String {
    let t = |transposed: bool| if transposed { 'T' } else { 'N' };
    format!(
        "{}x{}x{} {}{}",
        shape.m,
        shape.n,
        shape.k,
        t(shape.trans_a),
        t(shape.trans_b)
    )
}

/// The knobs at `site`, whose candidates for `gan-gpu tune` are `knob` of each of
/// `values` but the default.
fn tuned(
    ctx: &GpuContext,
    site: &str,
    values: &[u32],
    default: u32,
    knob: impl Fn(u32) -> Knobs,
) -> Knobs {
    ctx.knobs(site, || {
        values
            .iter()
            .filter(|&&v| v != default)
            .map(|&v| knob(v))
            .collect()
    })
}

/// A tuned value where it is one the shader supports, else the default (a hand-edited
/// cache cannot ask for a tile the kernel does not have).
fn chosen(tuned: Option<u32>, allowed: &[u32], default: u32) -> u32 {
    tuned.filter(|v| allowed.contains(v)).unwrap_or(default)
}

//! PNG plots of run output: line plots (profiles, convergence histories, reference data)
//! and colour maps of 2-D cell-centred fields.
//!
//! Both entry points, [`line_plot`] and [`field_map`], draw with `plotters` on a bitmap,
//! using the DejaVu Sans font embedded by the `dejavu` crate (registered once per process),
//! and write atomically: the image is encoded to a temporary `.png` in the target's
//! directory and renamed to the final name only when complete, so a half-written file
//! never carries the final name.
//!
//! Awkward data never panic: non-finite values are skipped (lines) or drawn grey (maps)
//! and never enter a range; zero ranges are padded; log axes drop non-positive values and
//! fall back to a linear axis if nothing positive is left.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};

/// One curve of a line plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend entry; may be empty (a single unlabelled series gets no legend).
    pub label: String,
    /// Abscissae; must have the same length as `y`.
    pub x: Vec<f64>,
    /// Ordinates; must have the same length as `x`.
    pub y: Vec<f64>,
    /// How the curve is drawn.
    pub style: SeriesStyle,
}

impl Series {
    /// A series from its label, coordinates and style.
    pub fn new(label: impl Into<String>, x: Vec<f64>, y: Vec<f64>, style: SeriesStyle) -> Self {
        Series { label: label.into(), x, y, style }
    }
}

/// How a [`Series`] is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeriesStyle {
    /// A solid line through the points in order; a non-finite point breaks the line.
    Line,
    /// One marker per point, no line (e.g. reference data such as Ghia et al.'s table).
    Points,
    /// A translucent filled polygon through the points in order (closed back to the
    /// first): an error band is its lower edge followed by its upper edge reversed.
    Area,
}

/// A line plot: curves on common axes, with title, axis labels and optional log axes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinePlot {
    /// Title drawn above the axes.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The curves, drawn in order; colours follow the position in this list.
    pub series: Vec<Series>,
    /// Logarithmic horizontal axis (non-positive abscissae are dropped).
    pub log_x: bool,
    /// Logarithmic vertical axis (non-positive ordinates are dropped).
    pub log_y: bool,
}

impl LinePlot {
    /// An empty linear plot with the given title and axis labels.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        LinePlot { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), ..LinePlot::default() }
    }
}

/// A colour map of a 2-D cell-centred field, with a colour bar.
///
/// Colour rule: if the finite values have both signs with comparable magnitude
/// (`min < 0 < max` and the smaller of `|min|`, `max` is at least a tenth of the larger),
/// a diverging blue-white-red map (ColorBrewer RdBu) is used, centred at 0 with symmetric
/// limits `±max(|min|, max)`; otherwise viridis (perceptually uniform) spans `[min, max]`.
/// Constant data get a padded range. Non-finite cells are drawn grey.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldMap<'a> {
    /// Title drawn above the map.
    pub title: String,
    /// Row-major values, y slowest: data[j * nx + i] is the cell (i, j) (cell-centred).
    pub data: &'a [f64],
    /// Number of cells along x.
    pub nx: usize,
    /// Number of cells along y.
    pub ny: usize,
    /// Physical extent of the map: [x_min, x_max, y_min, y_max] (cell faces, not centres).
    pub extent: [f64; 4],
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// Label of the colour bar (field name).
    pub colorbar_label: String,
}

/// Why a plot could not be written. Every message names the target file.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No series has a finite point (after dropping non-positive values on log axes).
    #[error("nothing to plot in {}: no finite point in any series", .path.display())]
    Empty {
        /// The target file.
        path: PathBuf,
    },
    /// A series has `x` and `y` of different lengths.
    #[error(
        "cannot plot {}: series {index} ({label:?}) has {nx} x values but {ny} y values",
        .path.display()
    )]
    LengthMismatch {
        /// The target file.
        path: PathBuf,
        /// Position of the series in [`LinePlot::series`].
        index: usize,
        /// Its label.
        label: String,
        /// Length of its `x`.
        nx: usize,
        /// Length of its `y`.
        ny: usize,
    },
    /// A field map with no cell or whose data length is not `nx * ny`.
    #[error(
        "cannot plot field map {}: {len} values for {nx} x {ny} cells (need a non-empty grid and nx * ny values)",
        .path.display()
    )]
    Shape {
        /// The target file.
        path: PathBuf,
        /// Cells along x.
        nx: usize,
        /// Cells along y.
        ny: usize,
        /// Length of the data.
        len: usize,
    },
    /// A field map whose extent is not finite or not increasing.
    #[error(
        "cannot plot field map {}: extent {extent:?} must be finite with x_min < x_max and y_min < y_max",
        .path.display()
    )]
    Extent {
        /// The target file.
        path: PathBuf,
        /// The offending extent.
        extent: [f64; 4],
    },
    /// Drawing failed (e.g. the embedded font could not be loaded).
    #[error("cannot draw {}: {why}", .path.display())]
    Draw {
        /// The target file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// Encoding, writing or renaming the PNG failed.
    #[error("cannot write PNG {}: {why}", .path.display())]
    Write {
        /// The target file.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// Writes `plot` as a PNG of 1000 x 700 pixels to `path` (atomically).
///
/// Non-finite points are skipped (a [`SeriesStyle::Line`] is broken there), empty series
/// are skipped, and on a log axis non-positive values are dropped; if that leaves nothing,
/// the axis falls back to linear. A legend is drawn when there is more than one curve or a
/// curve has a label. The file is PNG whatever the extension of `path`.
///
/// # Errors
/// [`PlotError::LengthMismatch`] if a series has `x.len() != y.len()`,
/// [`PlotError::Empty`] if no series has a finite point, and [`PlotError::Draw`] or
/// [`PlotError::Write`] if drawing or writing fails.
pub fn line_plot(path: &Path, plot: &LinePlot) -> Result<(), PlotError> {
    for (index, s) in plot.series.iter().enumerate() {
        if s.x.len() != s.y.len() {
            return Err(PlotError::LengthMismatch {
                path: path.to_path_buf(),
                index,
                label: s.label.clone(),
                nx: s.x.len(),
                ny: s.y.len(),
            });
        }
    }
    let prepared = prepare_lines(plot).ok_or_else(|| PlotError::Empty { path: path.to_path_buf() })?;
    write_atomically(path, |tmp| render_lines(tmp, path, plot, &prepared))
}

/// Writes `map` as a PNG colour map with a colour bar to `path` (atomically).
///
/// The plot area follows the aspect ratio of the extent, its longer side 900 pixels (the
/// shorter side is kept to at least 150 pixels, so extreme aspect ratios are distorted).
/// Each pixel shows the nearest cell, so large grids (1024 x 1024 and more) are cheap.
/// See [`FieldMap`] for the colour rule. A map with no finite value is drawn all grey.
///
/// # Errors
/// [`PlotError::Shape`] if `nx` or `ny` is 0 or `data.len() != nx * ny`,
/// [`PlotError::Extent`] if the extent is not finite and increasing, and
/// [`PlotError::Draw`] or [`PlotError::Write`] if drawing or writing fails.
pub fn field_map(path: &Path, map: &FieldMap) -> Result<(), PlotError> {
    map_checked(path, map, false)
}

/// As [`field_map`], but with a square plot area whatever the extent: for maps over a
/// parameter space, whose axes have unrelated units.
pub fn parameter_map(path: &Path, map: &FieldMap) -> Result<(), PlotError> {
    map_checked(path, map, true)
}

fn map_checked(path: &Path, map: &FieldMap, square: bool) -> Result<(), PlotError> {
    let len = map.data.len();
    if map.nx == 0 || map.ny == 0 || map.nx.checked_mul(map.ny) != Some(len) {
        return Err(PlotError::Shape { path: path.to_path_buf(), nx: map.nx, ny: map.ny, len });
    }
    let [x0, x1, y0, y1] = map.extent;
    if !map.extent.iter().all(|v| v.is_finite()) || x0 >= x1 || y0 >= y1 {
        return Err(PlotError::Extent { path: path.to_path_buf(), extent: map.extent });
    }
    write_atomically(path, |tmp| render_map(tmp, path, map, square))
}

// ---------------------------------------------------------------------------------------
// Files and fonts

type Root<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Registers DejaVu Sans as "sans-serif" once per process; false if the font was rejected.
fn fonts_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        // Other styles fall back to Normal in plotters.
        register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok()
    })
}

/// `.<stem>.tmp-<pid>-<n>.png` beside `path`: same file system, so the rename is atomic,
/// and a `.png` extension, which plotters' encoder needs.
fn temp_path(path: &Path) -> Option<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let stem = path.file_stem()?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!(".{}.tmp-{}-{}.png", stem.to_string_lossy(), std::process::id(), n);
    Some(match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(name),
        _ => PathBuf::from(name),
    })
}

/// Runs `render` on a temporary file beside `path`, then renames it to `path`; the
/// temporary file is removed on any error.
fn write_atomically(path: &Path, render: impl FnOnce(&Path) -> Result<(), PlotError>) -> Result<(), PlotError> {
    if !fonts_ready() {
        return Err(PlotError::Draw { path: path.to_path_buf(), why: "the embedded DejaVu Sans font could not be loaded".into() });
    }
    let tmp = temp_path(path).ok_or_else(|| PlotError::Write { path: path.to_path_buf(), why: "the path has no file name".into() })?;
    // `render` owns the bitmap backend, which is dropped (and may flush) before it returns,
    // so nothing writes to `tmp` after it is removed here.
    let result =
        render(&tmp).and_then(|()| fs::rename(&tmp, path).map_err(|e| PlotError::Write { path: path.to_path_buf(), why: e.to_string() }));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

type BackendError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

fn draw_error(path: &Path) -> impl Fn(DrawingAreaErrorKind<BackendError>) -> PlotError + '_ {
    move |e| PlotError::Draw { path: path.to_path_buf(), why: e.to_string() }
}

fn present(root: &Root, path: &Path) -> Result<(), PlotError> {
    root.present().map_err(|e| PlotError::Write { path: path.to_path_buf(), why: e.to_string() })
}

// ---------------------------------------------------------------------------------------
// Colours

/// matplotlib's tab10 palette, for series.
const TAB10: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// viridis at t = 0, 0.1, ..., 1 (matplotlib's values).
const VIRIDIS: [(u8, u8, u8); 11] = [
    (68, 1, 84),
    (72, 36, 117),
    (65, 68, 135),
    (53, 95, 141),
    (42, 120, 142),
    (33, 145, 140),
    (34, 168, 132),
    (68, 191, 112),
    (122, 209, 81),
    (189, 223, 38),
    (253, 231, 37),
];

/// ColorBrewer RdBu (11 classes), reversed: blue for negative, near-white at 0, red.
const RDBU: [(u8, u8, u8); 11] = [
    (5, 48, 97),
    (33, 102, 172),
    (67, 147, 195),
    (146, 197, 222),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
    (103, 0, 31),
];

/// Colour of non-finite cells.
const MISSING: RGBColor = RGBColor(128, 128, 128);

/// A colour scale: table, limits.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ColourScale {
    table: &'static [(u8, u8, u8)],
    lo: f64,
    hi: f64,
}

impl ColourScale {
    /// The scale for `data` (see [`FieldMap`] for the rule).
    fn for_data(data: &[f64]) -> Self {
        let Some((min, max)) = finite_bounds(data.iter().copied()) else {
            return ColourScale { table: &VIRIDIS, lo: 0.0, hi: 1.0 };
        };
        if min < 0.0 && max > 0.0 && (-min).min(max) >= 0.1 * (-min).max(max) {
            let m = (-min).max(max);
            return ColourScale { table: &RDBU, lo: -m, hi: m };
        }
        let (lo, hi) = if is_degenerate(min, max) { pad_constant(min, max) } else { (min, max) };
        ColourScale { table: &VIRIDIS, lo, hi }
    }

    fn colour(&self, v: f64) -> RGBColor {
        if !v.is_finite() {
            return MISSING;
        }
        // Halves keep the differences finite even for limits near ±f64::MAX.
        let t = (v / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0);
        interpolate(self.table, if t.is_nan() { 0.5 } else { t })
    }
}

fn interpolate(table: &[(u8, u8, u8)], t: f64) -> RGBColor {
    let n = table.len().saturating_sub(1);
    if n == 0 {
        return table.first().map_or(MISSING, |&(r, g, b)| RGBColor(r, g, b));
    }
    let s = t.clamp(0.0, 1.0) * n as f64;
    let k = (s.floor() as usize).min(n - 1);
    let f = s - k as f64;
    let (a, b) = (table[k], table[k + 1]);
    let mix = |p: u8, q: u8| (f64::from(p) + f * (f64::from(q) - f64::from(p))).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

// ---------------------------------------------------------------------------------------
// Ranges, ticks and labels

fn finite_bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// A range too narrow to resolve (constant data, up to rounding).
fn is_degenerate(lo: f64, hi: f64) -> bool {
    hi / 2.0 - lo / 2.0 <= lo.abs().max(hi.abs()) * 0.5e-12
}

/// A finite, non-empty range around constant data.
fn pad_constant(lo: f64, hi: f64) -> (f64, f64) {
    let mid = lo / 2.0 + hi / 2.0;
    let pad = (mid.abs() * 0.1).max(1e-300).max(f64::MIN_POSITIVE);
    let pad = if mid == 0.0 { 1.0 } else { pad };
    ((mid - pad).max(-f64::MAX), (mid + pad).min(f64::MAX))
}

/// The axis range of finite data bounds: 4 % margins, constant data padded.
fn linear_axis(lo: f64, hi: f64) -> (f64, f64) {
    if is_degenerate(lo, hi) {
        return pad_constant(lo, hi);
    }
    let pad = hi * 0.04 - lo * 0.04;
    ((lo - pad).max(-f64::MAX), (hi + pad).min(f64::MAX))
}

/// The log-axis range of positive finite data bounds: 4 % margins in decades, constant
/// data padded to a factor of 2 each side.
fn log_axis(lo: f64, hi: f64) -> (f64, f64) {
    let (a, b) = (lo.log10(), hi.log10());
    let (a, b) = if b - a < 1e-9 { (a - 0.3, b + 0.3) } else { (a - 0.04 * (b - a), b + 0.04 * (b - a)) };
    (10f64.powf(a).max(f64::MIN_POSITIVE), 10f64.powf(b).min(f64::MAX))
}

/// Ticks of an axis and how to label them.
#[derive(Clone, Debug, PartialEq)]
struct Ticks {
    /// Labelled ticks (bold grid lines).
    major: Vec<f64>,
    /// Unlabelled ticks (light grid lines).
    minor: Vec<f64>,
    /// Spacing of linear ticks (None for decades), sets the decimals of labels.
    step: Option<f64>,
    /// Label in scientific notation.
    sci: bool,
}

impl Ticks {
    /// About `target` ticks at 1, 2 or 5 times a power of ten within `[lo, hi]`.
    fn linear(lo: f64, hi: f64, target: usize) -> Self {
        let t = target.max(1) as f64;
        let raw = hi / t - lo / t;
        let fallback = Ticks { major: vec![lo, hi], minor: vec![], step: None, sci: true };
        if !(raw > 0.0 && raw.is_finite()) {
            return fallback;
        }
        let mag = 10f64.powf(raw.log10().floor());
        let f = raw / mag;
        let step = mag
            * if f <= 1.0 {
                1.0
            } else if f <= 2.0 {
                2.0
            } else if f <= 5.0 {
                5.0
            } else {
                10.0
            };
        let (k0, k1) = ((lo / step).ceil(), (hi / step).floor());
        if !(step > 0.0 && step.is_finite() && k0.is_finite() && k1.is_finite()) || k1 - k0 > 100.0 {
            return fallback;
        }
        let major: Vec<f64> = (0..=(k1 - k0).max(-1.0) as i64)
            .map(|i| {
                let v = (k0 + i as f64) * step;
                if v.abs() < step * 1e-9 {
                    0.0
                } else {
                    v
                }
            })
            .collect();
        let big = major.iter().fold(0f64, |m, v| m.max(v.abs()));
        Ticks { major, minor: vec![], step: Some(step), sci: !(1e-3..1e5).contains(&big) && big != 0.0 }
    }

    /// Decade ticks of a log axis over `[lo, hi]` (0 < lo < hi), with 2..9 minor ticks when
    /// there are few decades; a range of less than three decades gets 1-2-5 or linear ticks.
    fn log(lo: f64, hi: f64) -> Self {
        let (e0, e1) = (lo.log10().ceil() as i32, hi.log10().floor() as i32);
        let decades = i64::from(e1) - i64::from(e0) + 1;
        if decades >= 3 {
            let every = ((decades + 9) / 10).max(1) as i32;
            let major: Vec<f64> = (e0..=e1).filter(|e| (e - e0) % every == 0).map(|e| 10f64.powi(e)).collect();
            let minor = if every == 1 && decades <= 8 {
                (e0 - 1..=e1).flat_map(|e| (2..10).map(move |m| f64::from(m) * 10f64.powi(e))).filter(|v| (lo..=hi).contains(v)).collect()
            } else {
                vec![]
            };
            return Ticks { major, minor, step: None, sci: false };
        }
        let major: Vec<f64> =
            (e0 - 1..=e1).flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e))).filter(|v| (lo..=hi).contains(v)).collect();
        if major.len() >= 3 {
            return Ticks { major, minor: vec![], step: None, sci: false };
        }
        let mut t = Ticks::linear(lo, hi, 6);
        t.major.retain(|&v| v > 0.0);
        t
    }

    fn label(&self, v: f64) -> String {
        let v = if v == 0.0 { 0.0 } else { v }; // no "-0"
        let Some(step) = self.step else { return short_number(v) };
        let e_step = step.log10().floor();
        if self.sci {
            if v == 0.0 {
                return "0".into();
            }
            let p = (v.abs().log10().floor() - e_step).clamp(0.0, 15.0) as usize;
            trim_mantissa(&format!("{v:.p$e}"))
        } else {
            let d = (-e_step).clamp(0.0, 17.0) as usize;
            format!("{v:.d$}")
        }
    }
}

/// `v` with at most three significant digits, plain between 1e-3 and 1e5, else scientific.
fn short_number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if (1e-3..1e5).contains(&a) {
        let d = (2.0 - a.log10().floor()).clamp(0.0, 17.0) as usize;
        let s = format!("{v:.d$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    } else {
        trim_mantissa(&format!("{v:.2e}"))
    }
}

/// "1.50e-3" -> "1.5e-3", "2.00e6" -> "2e6".
fn trim_mantissa(s: &str) -> String {
    match s.split_once('e') {
        Some((m, e)) if m.contains('.') => {
            format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.'))
        }
        _ => s.to_string(),
    }
}

/// A linear or logarithmic axis with our own ticks: one coordinate type for all four
/// combinations of log axes, and labels formatted by [`Ticks::label`].
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Ticks,
}

impl Axis {
    fn linear(lo: f64, hi: f64, target: usize) -> Self {
        Axis { lo, hi, log: false, ticks: Ticks::linear(lo, hi, target) }
    }

    fn log(lo: f64, hi: f64) -> Self {
        Axis { lo, hi, log: true, ticks: Ticks::log(lo, hi) }
    }

    /// Position of `v` in the range, 0 at `lo` and 1 at `hi` (may be outside, or NaN).
    fn unit(&self, v: f64) -> f64 {
        if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            // Halves keep the differences finite even for limits near ±f64::MAX.
            (v / 2.0 - self.lo / 2.0) / (self.hi / 2.0 - self.lo / 2.0)
        }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = self.unit(*v);
        let px = f64::from(limit.0) + t * (f64::from(limit.1) - f64::from(limit.0));
        // Far-off (or NaN) points are clamped so that pixel arithmetic cannot overflow.
        if px.is_nan() {
            limit.0
        } else {
            px.clamp(-1e5, 1e5).round() as i32
        }
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.ticks.minor.clone()
        } else {
            self.ticks.major.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

// ---------------------------------------------------------------------------------------
// Line plots

const LINE_SIZE: (u32, u32) = (1000, 700);

/// A series reduced to what is drawn.
struct Curve {
    /// Position in [`LinePlot::series`] (sets the colour and a default name).
    index: usize,
    name: String,
    style: SeriesStyle,
    colour: RGBColor,
    /// Marker shape for points (index into the shapes cycle).
    marker: usize,
    /// Runs of consecutive drawable points (a Line is broken between runs).
    runs: Vec<Vec<(f64, f64)>>,
}

struct PreparedLines {
    log_x: bool,
    log_y: bool,
    x: (f64, f64),
    y: (f64, f64),
    curves: Vec<Curve>,
    legend: bool,
}

/// Splits the series into drawable runs and finds the axes; None if nothing is drawable.
fn prepare_lines(plot: &LinePlot) -> Option<PreparedLines> {
    let mut modes = vec![(plot.log_x, plot.log_y), (plot.log_x, false), (false, plot.log_y), (false, false)];
    modes.dedup();
    for (log_x, log_y) in modes {
        let keep = |x: f64, y: f64| x.is_finite() && y.is_finite() && (!log_x || x > 0.0) && (!log_y || y > 0.0);
        let mut curves = Vec::new();
        let mut markers = 0;
        for (index, s) in plot.series.iter().enumerate() {
            let mut runs = vec![];
            let mut run = vec![];
            for (&x, &y) in s.x.iter().zip(&s.y) {
                if keep(x, y) {
                    run.push((x, y));
                } else if !run.is_empty() && s.style != SeriesStyle::Points {
                    runs.push(std::mem::take(&mut run));
                }
            }
            if !run.is_empty() {
                runs.push(run);
            }
            if runs.is_empty() {
                continue;
            }
            let marker = if s.style == SeriesStyle::Points {
                markers += 1;
                markers - 1
            } else {
                0
            };
            curves.push(Curve { index, name: s.label.clone(), style: s.style, colour: TAB10[index % TAB10.len()], marker, runs });
        }
        let points = || curves.iter().flat_map(|c| c.runs.iter().flatten());
        let (Some(bx), Some(by)) = (finite_bounds(points().map(|p| p.0)), finite_bounds(points().map(|p| p.1))) else {
            continue;
        };
        let legend = curves.len() > 1 || curves.iter().any(|c| !c.name.is_empty());
        if legend {
            for c in curves.iter_mut().filter(|c| c.name.is_empty()) {
                c.name = format!("series {}", c.index + 1);
            }
        }
        let x = if log_x { log_axis(bx.0, bx.1) } else { linear_axis(bx.0, bx.1) };
        let y = if log_y { log_axis(by.0, by.1) } else { linear_axis(by.0, by.1) };
        return Some(PreparedLines { log_x, log_y, x, y, curves, legend });
    }
    None
}

fn render_lines(tmp: &Path, path: &Path, plot: &LinePlot, p: &PreparedLines) -> Result<(), PlotError> {
    let root = BitMapBackend::new(tmp, LINE_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error(path))?;
    let x = if p.log_x { Axis::log(p.x.0, p.x.1) } else { Axis::linear(p.x.0, p.x.1, 9) };
    let y = if p.log_y { Axis::log(p.y.0, p.y.1) } else { Axis::linear(p.y.0, p.y.1, 8) };
    Axes { plot, prepared: p, path }.draw(&root, x, y)?;
    present(&root, path)
}

struct Axes<'p> {
    plot: &'p LinePlot,
    prepared: &'p PreparedLines,
    path: &'p Path,
}

impl Axes<'_> {
    fn draw(&self, root: &Root, x: Axis, y: Axis) -> Result<(), PlotError> {
        let (xt, yt) = (x.ticks.clone(), y.ticks.clone());
        let err = draw_error(self.path);
        let y_labels: Vec<String> = yt.major.iter().map(|&v| yt.label(v)).collect();
        let y_room = label_room(label_width(y_labels.iter().map(String::as_str)), !self.plot.y_label.is_empty());
        let mut chart = ChartBuilder::on(root)
            .caption(&self.plot.title, ("sans-serif", 28))
            .margin(20)
            .margin_right(30)
            .x_label_area_size(65)
            .y_label_area_size(y_room.max(40))
            .build_cartesian_2d(x, y)
            .map_err(&err)?;
        let fx = |v: &f64| xt.label(*v);
        let fy = |v: &f64| yt.label(*v);
        chart
            .configure_mesh()
            .x_desc(&self.plot.x_label)
            .y_desc(&self.plot.y_label)
            .label_style(("sans-serif", TICK_FONT))
            .axis_desc_style(("sans-serif", DESC_FONT))
            .bold_line_style(BLACK.mix(0.14))
            .light_line_style(BLACK.mix(0.05))
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .draw()
            .map_err(&err)?;
        frame(root, chart.plotting_area().get_pixel_range()).map_err(&err)?;

        for c in &self.prepared.curves {
            let colour = c.colour;
            let mut labelled = !self.prepared.legend;
            for run in &c.runs {
                let anno = match c.style {
                    SeriesStyle::Line if run.len() > 1 => {
                        chart.draw_series(LineSeries::new(run.iter().copied(), colour.stroke_width(2))).map_err(&err)?
                    }
                    SeriesStyle::Line => chart.draw_series(run.iter().map(|&q| Circle::new(q, 2, colour.filled()))).map_err(&err)?,
                    SeriesStyle::Area => {
                        chart.draw_series(std::iter::once(Polygon::new(run.clone(), colour.mix(0.22).filled()))).map_err(&err)?
                    }
                    SeriesStyle::Points => match c.marker % 4 {
                        0 => chart.draw_series(run.iter().map(|&q| Circle::new(q, 4, colour.filled()))).map_err(&err)?,
                        1 => chart
                            .draw_series(run.iter().map(|&q| EmptyElement::at(q) + Rectangle::new([(-4, -4), (4, 4)], colour.filled())))
                            .map_err(&err)?,
                        2 => chart.draw_series(run.iter().map(|&q| TriangleMarker::new(q, 5, colour.filled()))).map_err(&err)?,
                        _ => chart.draw_series(run.iter().map(|&q| Cross::new(q, 4, colour.stroke_width(2)))).map_err(&err)?,
                    },
                };
                if labelled {
                    continue;
                }
                labelled = true;
                anno.label(c.name.as_str());
                match (c.style, c.marker % 4) {
                    (SeriesStyle::Line, _) => {
                        anno.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], colour.stroke_width(2)))
                    }
                    (SeriesStyle::Area, _) => {
                        anno.legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 24, y + 6)], colour.mix(0.22).filled()))
                    }
                    (SeriesStyle::Points, 0) => anno.legend(move |(x, y)| Circle::new((x + 12, y), 4, colour.filled())),
                    (SeriesStyle::Points, 1) => {
                        anno.legend(move |(x, y)| Rectangle::new([(x + 8, y - 4), (x + 16, y + 4)], colour.filled()))
                    }
                    (SeriesStyle::Points, 2) => anno.legend(move |(x, y)| TriangleMarker::new((x + 12, y), 5, colour.filled())),
                    (SeriesStyle::Points, _) => anno.legend(move |(x, y)| Cross::new((x + 12, y), 4, colour.stroke_width(2))),
                };
            }
        }
        if self.prepared.legend {
            chart
                .configure_series_labels()
                .position(self.legend_corner())
                .label_font(("sans-serif", TICK_FONT))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.4))
                .margin(12)
                .draw()
                .map_err(&err)?;
        }
        Ok(())
    }

    /// The corner of the plot area that the fewest points (and line samples) fall in.
    fn legend_corner(&self) -> SeriesLabelPosition {
        let p = self.prepared;
        let unit = |v: f64, (lo, hi): (f64, f64), log: bool| {
            if log {
                (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
            } else {
                (v / 2.0 - lo / 2.0) / (hi / 2.0 - lo / 2.0)
            }
        };
        let chars = p.curves.iter().map(|c| c.name.chars().count()).max().unwrap_or(0);
        let w = ((chars as f64 * 9.0 + 70.0) / 870.0).min(0.9);
        let h = ((p.curves.len() as f64 * 22.0 + 30.0) / 560.0).min(0.9);
        let corners = [
            (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0 - h),
            (SeriesLabelPosition::UpperLeft, 0.0, 1.0 - h),
            (SeriesLabelPosition::LowerRight, 1.0 - w, 0.0),
            (SeriesLabelPosition::LowerLeft, 0.0, 0.0),
        ];
        let mut counts = [0usize; 4];
        let mut count = |u: f64, v: f64| {
            for (k, &(_, u0, v0)) in corners.iter().enumerate() {
                if (u0..=u0 + w).contains(&u) && (v0..=v0 + h).contains(&v) {
                    counts[k] += 1;
                }
            }
        };
        for c in &p.curves {
            for run in &c.runs {
                let uv: Vec<(f64, f64)> = run.iter().map(|&(x, y)| (unit(x, p.x, p.log_x), unit(y, p.y, p.log_y))).collect();
                for (k, &(u, v)) in uv.iter().enumerate() {
                    count(u, v);
                    if c.style == SeriesStyle::Line {
                        if let Some(&(u1, v1)) = uv.get(k + 1) {
                            for s in 1..8 {
                                let f = f64::from(s) / 8.0;
                                count(u + f * (u1 - u), v + f * (v1 - v));
                            }
                        }
                    }
                }
            }
        }
        let best = (0..4).min_by_key(|&k| counts[k]).unwrap_or(0);
        corners[best].0.clone()
    }
}

/// A thin black frame around a plot area given by its pixel ranges.
fn frame(root: &Root, (xs, ys): (std::ops::Range<i32>, std::ops::Range<i32>)) -> Result<(), DrawingAreaErrorKind<BackendError>> {
    root.draw(&Rectangle::new([(xs.start, ys.start), (xs.end - 1, ys.end - 1)], BLACK.stroke_width(1)))
}

// ---------------------------------------------------------------------------------------
// Field maps

/// Pixel layout of a field map image.
#[derive(Clone, Copy, Debug, PartialEq)]
struct MapLayout {
    /// Image size.
    width: u32,
    height: u32,
    /// Plot area size.
    plot_w: u32,
    plot_h: u32,
    /// Room left of the plot area (y label and tick labels).
    left: u32,
    /// Room right of the colour bar (tick labels and colour-bar label).
    bar_labels: u32,
}

/// Longer side of the plot area, and least shorter side.
const MAP_LONG: f64 = 900.0;
const MAP_SHORT_MIN: f64 = 150.0;
/// Margins above the plot area (title) and below (x labels).
const MAP_TOP: u32 = 64;
const MAP_BOTTOM: u32 = 84;
/// Gap between plot area and colour bar, width of the bar, outer margin left and right.
const MAP_GAP: u32 = 30;
const BAR_W: u32 = 28;
const MAP_OUTER: u32 = 16;
const TICK_FONT: u32 = 18;
const DESC_FONT: u32 = 20;

/// Widest of `labels` in the tick font, in pixels.
fn label_width<'s>(labels: impl Iterator<Item = &'s str>) -> u32 {
    let font = ("sans-serif", TICK_FONT).into_font();
    labels.map(|s| font.box_size(s).map_or(0, |b| b.0)).max().unwrap_or(0)
}

/// Room for tick labels of width `label_w` plus an axis label (if any), beside an axis.
fn label_room(label_w: u32, has_desc: bool) -> u32 {
    // plotters puts labels 10 px from the axis (twice the tick length).
    12 + label_w + if has_desc { 12 + DESC_FONT } else { 0 }
}

/// Everything a field map is drawn from.
struct MapPlan {
    layout: MapLayout,
    scale: ColourScale,
    x: Axis,
    y: Axis,
    bar: Axis,
}

impl MapPlan {
    fn new(map: &FieldMap, square: bool) -> Self {
        let [x0, x1, y0, y1] = map.extent;
        let aspect = if square { 1.0 } else { (x1 / 2.0 - x0 / 2.0) / (y1 / 2.0 - y0 / 2.0) };
        let short = |a: f64| (MAP_LONG * a).round().clamp(MAP_SHORT_MIN, MAP_LONG) as u32;
        let (plot_w, plot_h) = if aspect >= 1.0 { (MAP_LONG as u32, short(1.0 / aspect)) } else { (short(aspect), MAP_LONG as u32) };
        let target = |len: u32| (len as usize / 110).clamp(3, 9);
        let (x, y) = (Axis::linear(x0, x1, target(plot_w)), Axis::linear(y0, y1, target(plot_h)));
        let scale = ColourScale::for_data(map.data);
        let bar = Axis::linear(scale.lo, scale.hi, (plot_h as usize / 90).clamp(3, 8));
        let labels = |a: &Axis| a.ticks.major.iter().map(|&v| a.ticks.label(v)).collect::<Vec<_>>();
        let left = MAP_OUTER + label_room(label_width(labels(&y).iter().map(String::as_str)), !map.y_label.is_empty());
        let bar_labels = label_room(label_width(labels(&bar).iter().map(String::as_str)), !map.colorbar_label.is_empty());
        let layout = MapLayout {
            width: left + plot_w + MAP_GAP + BAR_W + bar_labels + MAP_OUTER,
            height: MAP_TOP + plot_h + MAP_BOTTOM,
            plot_w,
            plot_h,
            left,
            bar_labels,
        };
        MapPlan { layout, scale, x, y, bar }
    }
}

impl MapLayout {
    /// Top-left pixel of the plot area.
    fn plot_origin(&self) -> (i32, i32) {
        (self.left as i32, MAP_TOP as i32)
    }

    /// Left pixel column of the colour bar.
    fn bar_x(&self) -> i32 {
        (self.left + self.plot_w + MAP_GAP) as i32
    }
}

fn render_map(tmp: &Path, path: &Path, map: &FieldMap, square: bool) -> Result<(), PlotError> {
    let err = draw_error(path);
    let MapPlan { layout, scale, x: xa, y: ya, bar } = MapPlan::new(map, square);
    let tick_font = ("sans-serif", TICK_FONT).into_font();
    let desc_font = ("sans-serif", DESC_FONT).into_font();

    let root = BitMapBackend::new(tmp, (layout.width, layout.height)).into_drawing_area();
    root.fill(&WHITE).map_err(&err)?;
    let (px0, py0) = layout.plot_origin();
    let title = TextStyle::from(("sans-serif", 26).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw_text(&map.title, &title, (px0 + layout.plot_w as i32 / 2, py0 / 2)).map_err(&err)?;

    // Axes of the map.
    let (left, _) = root.split_horizontally(layout.left + layout.plot_w);
    let (xt, yt) = (xa.ticks.clone(), ya.ticks.clone());
    let mut chart = ChartBuilder::on(&left)
        .margin_top(MAP_TOP)
        .margin_left(MAP_OUTER)
        .x_label_area_size(MAP_BOTTOM)
        .y_label_area_size(layout.left - MAP_OUTER)
        .build_cartesian_2d(xa, ya)
        .map_err(&err)?;
    let fx = |v: &f64| xt.label(*v);
    let fy = |v: &f64| yt.label(*v);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(&map.x_label)
        .y_desc(&map.y_label)
        .label_style(tick_font.clone())
        .axis_desc_style(desc_font.clone())
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .draw()
        .map_err(&err)?;

    // The cells: each pixel shows its nearest cell (row 0 at the top is j = ny - 1).
    let (xs, ys) = chart.plotting_area().get_pixel_range();
    drop(chart);
    let (w, h) = (xs.len().max(1), ys.len().max(1));
    let cols: Vec<usize> = (0..w).map(|c| (((c as f64 + 0.5) / w as f64 * map.nx as f64) as usize).min(map.nx - 1)).collect();
    let rows: Vec<usize> = (0..h).map(|r| map.ny - 1 - (((r as f64 + 0.5) / h as f64 * map.ny as f64) as usize).min(map.ny - 1)).collect();
    for (r, &j) in rows.iter().enumerate() {
        let row = &map.data[j * map.nx..(j + 1) * map.nx];
        for (c, &i) in cols.iter().enumerate() {
            root.draw_pixel((xs.start + c as i32, ys.start + r as i32), &scale.colour(row[i])).map_err(&err)?;
        }
    }
    frame(&root, (xs, ys.clone())).map_err(&err)?;

    // The colour bar, aligned with the plot area, ticks and labels on its right.
    let bxs = layout.bar_x()..layout.bar_x() + BAR_W as i32;
    let bh = ys.len().max(1);
    for r in 0..bh {
        let t = 1.0 - (r as f64 + 0.5) / bh as f64;
        let colour = scale.colour(scale.lo * (1.0 - t) + scale.hi * t);
        for px in bxs.clone() {
            root.draw_pixel((px, ys.start + r as i32), &colour).map_err(&err)?;
        }
    }
    frame(&root, (bxs.clone(), ys.clone())).map_err(&err)?;
    let label_style = TextStyle::from(tick_font).pos(Pos::new(HPos::Left, VPos::Center));
    for (v, text) in bar.ticks.major.iter().map(|&v| (v, bar.ticks.label(v))) {
        let y = ys.start + ((1.0 - bar.unit(v)) * (bh as f64 - 1.0)).round().clamp(0.0, bh as f64) as i32;
        root.draw(&PathElement::new(vec![(bxs.end, y), (bxs.end + 6, y)], BLACK)).map_err(&err)?;
        root.draw_text(&text, &label_style, (bxs.end + 10, y)).map_err(&err)?;
    }
    if !map.colorbar_label.is_empty() {
        let style = TextStyle::from(desc_font).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Top));
        let x = bxs.end + (layout.bar_labels - DESC_FONT) as i32;
        root.draw_text(&map.colorbar_label, &style, (x, ys.start + bh as i32 / 2)).map_err(&err)?;
    }
    present(&root, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;
    use std::time::Instant;

    /// A fresh directory under the system temp dir; kept if TESSERA_KEEP_PLOTS is set.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let dir =
                std::env::temp_dir().join(format!("tessera-plot-{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
            fs::create_dir_all(&dir).expect("create scratch dir");
            Scratch(dir)
        }
        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
        /// Names of the files left in the directory.
        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&self.0)
                .expect("read scratch dir")
                .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if std::env::var_os("TESSERA_KEEP_PLOTS").is_none() {
                let _ = fs::remove_dir_all(&self.0);
            }
        }
    }

    /// A decoded RGB image.
    struct Image {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    }

    impl Image {
        fn read(path: &Path) -> Self {
            let decoder = png::Decoder::new(fs::File::open(path).expect("open png"));
            let mut reader = decoder.read_info().expect("png header");
            let mut buf = vec![0; reader.output_buffer_size()];
            let info = reader.next_frame(&mut buf).expect("png frame");
            assert_eq!(info.color_type, png::ColorType::Rgb, "plotters writes RGB");
            buf.truncate(info.buffer_size());
            Image { width: info.width, height: info.height, rgb: buf }
        }
        fn at(&self, x: i32, y: i32) -> (u8, u8, u8) {
            let k = 3 * (y as usize * self.width as usize + x as usize);
            (self.rgb[k], self.rgb[k + 1], self.rgb[k + 2])
        }
        fn count(&self, c: RGBColor) -> usize {
            self.rgb.chunks(3).filter(|p| p[0] == c.0 && p[1] == c.1 && p[2] == c.2).count()
        }
        fn is_uniform(&self) -> bool {
            self.rgb.chunks(3).all(|p| p == &self.rgb[..3])
        }
    }

    fn line_fixture() -> LinePlot {
        let x: Vec<f64> = (0..=100).map(|k| f64::from(k) / 100.0).collect();
        let y: Vec<f64> = x.iter().map(|&x| (2.0 * PI * x).sin()).collect();
        let xr: Vec<f64> = (0..=10).map(|k| f64::from(k) / 10.0).collect();
        let yr: Vec<f64> = xr.iter().map(|&x| (2.0 * PI * x).sin() + 0.05).collect();
        LinePlot {
            series: vec![Series::new("computed", x, y, SeriesStyle::Line), Series::new("reference", xr, yr, SeriesStyle::Points)],
            ..LinePlot::new("Profile u(y) at x = 0.5", "y", "u")
        }
    }

    fn map_fixture(data: &[f64], nx: usize, ny: usize, extent: [f64; 4]) -> FieldMap<'_> {
        FieldMap {
            title: "Vorticity at t = 1.5".into(),
            data,
            nx,
            ny,
            extent,
            x_label: "x / m".into(),
            y_label: "y / m".into(),
            colorbar_label: "vorticity ω / s⁻¹".into(),
        }
    }

    fn sample(nx: usize, ny: usize, extent: [f64; 4], f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
        let [x0, x1, y0, y1] = extent;
        let mut v = Vec::with_capacity(nx * ny);
        for j in 0..ny {
            for i in 0..nx {
                let x = x0 + (i as f64 + 0.5) / nx as f64 * (x1 - x0);
                let y = y0 + (j as f64 + 0.5) / ny as f64 * (y1 - y0);
                v.push(f(x, y));
            }
        }
        v
    }

    #[test]
    fn line_plot_draws_lines_markers_and_legend() {
        let dir = Scratch::new("lines");
        let path = dir.file("profile.png");
        line_plot(&path, &line_fixture()).expect("line plot");
        let img = Image::read(&path);
        assert_eq!((img.width, img.height), LINE_SIZE);
        assert!(!img.is_uniform());
        // Solid 2-px line in tab:blue and filled markers in tab:orange, both exact colours
        // (anti-aliasing only touches edges): hundreds of pixels each, and some in the legend.
        assert!(img.count(TAB10[0]) > 500, "blue line pixels: {}", img.count(TAB10[0]));
        assert!(img.count(TAB10[1]) > 300, "orange marker pixels: {}", img.count(TAB10[1]));
        assert_eq!(dir.names(), vec!["profile.png".to_string()], "no temporary file left");
    }

    #[test]
    fn log_log_plot_with_non_positive_values() {
        let dir = Scratch::new("loglog");
        let h: Vec<f64> = (0..6).map(|k| 0.5f64.powi(k)).collect();
        let mut e: Vec<f64> = h.iter().map(|h| 3.0 * h * h).collect();
        e[2] = 0.0; // dropped on the log axis
        let plot = LinePlot {
            series: vec![
                Series::new("error", h.clone(), e, SeriesStyle::Points),
                Series::new("O(h^2)", h.clone(), h.iter().map(|h| h * h).collect(), SeriesStyle::Line),
            ],
            log_x: true,
            log_y: true,
            ..LinePlot::new("Convergence", "h", "L2 error")
        };
        let path = dir.file("conv.png");
        line_plot(&path, &plot).expect("log-log plot");
        assert!(!Image::read(&path).is_uniform());
        let p = prepare_lines(&plot).expect("drawable");
        assert!(p.log_x && p.log_y);
        assert_eq!(p.curves[0].runs.iter().map(Vec::len).sum::<usize>(), 5);
    }

    #[test]
    fn awkward_line_inputs_do_not_panic() {
        let dir = Scratch::new("awkward");
        let path = dir.file("a.png");
        let one = |x: Vec<f64>, y: Vec<f64>, style| LinePlot { series: vec![Series::new("", x, y, style)], ..LinePlot::new("t", "x", "y") };
        // Errors where documented, each naming the file.
        let empty = LinePlot::new("t", "x", "y");
        let nan = one(vec![f64::NAN, 1.0], vec![1.0, f64::INFINITY], SeriesStyle::Line);
        for plot in [&empty, &nan, &one(vec![], vec![], SeriesStyle::Points)] {
            let e = line_plot(&path, plot).expect_err("nothing to plot");
            assert!(matches!(e, PlotError::Empty { .. }), "{e}");
            assert!(e.to_string().contains("a.png"), "{e}");
        }
        let e = line_plot(&path, &one(vec![1.0, 2.0], vec![1.0], SeriesStyle::Line)).expect_err("lengths");
        assert!(matches!(e, PlotError::LengthMismatch { nx: 2, ny: 1, .. }), "{e}");
        assert!(!path.exists());

        // Drawn without panicking.
        let mut cases = vec![
            one(vec![1.0, 2.0, 3.0], vec![5.0; 3], SeriesStyle::Line),
            one(vec![0.0], vec![0.0], SeriesStyle::Line),
            one(vec![2.0], vec![-7.0], SeriesStyle::Points),
            one(vec![0.0, 1.0, f64::NAN, 3.0, 4.0], vec![1.0, f64::NEG_INFINITY, 2.0, 3.0, 1.0], SeriesStyle::Line),
            one(vec![-1e308, 1e308], vec![f64::MAX, -f64::MAX], SeriesStyle::Line),
            one(vec![0.0, 5e-324], vec![1e-300, 1e-300], SeriesStyle::Points),
            one(vec![1.0, 1.0 + 1e-15], vec![1.0, 2.0], SeriesStyle::Line),
            one(vec![1e-300, 1e300], vec![1.0, 2.0], SeriesStyle::Line),
        ];
        let mut log_bad = one(vec![-1.0, 0.0, 1.0], vec![-2.0, 0.0, -1.0], SeriesStyle::Line);
        log_bad.log_x = true;
        log_bad.log_y = true; // nothing positive on y: falls back to linear y
        cases.push(log_bad);
        let mut log_narrow = one(vec![2.0, 3.0], vec![2.0, 3.0], SeriesStyle::Line);
        log_narrow.log_x = true;
        log_narrow.log_y = true;
        cases.push(log_narrow);
        cases.push(LinePlot { series: vec![Series::new("", vec![1.0, 2.0], vec![3.0, 1.0], SeriesStyle::Line)], ..LinePlot::default() });
        let mut with_empty = line_fixture();
        with_empty.series.push(Series::new("nothing", vec![], vec![], SeriesStyle::Line));
        cases.push(with_empty);
        for (k, plot) in cases.iter().enumerate() {
            let path = dir.file(&format!("case{k:02}.png"));
            line_plot(&path, plot).unwrap_or_else(|e| panic!("case {k}: {e}"));
            let img = Image::read(&path);
            assert!(!img.is_uniform() && img.count(TAB10[0]) > 0, "case {k}: blue curve drawn");
        }
        assert_eq!(dir.names().len(), cases.len(), "only final files: {:?}", dir.names());
    }

    #[test]
    fn positive_field_uses_viridis_low_dark_high_yellow() {
        let dir = Scratch::new("viridis");
        let extent = [0.0, 2.0, 0.0, 1.0];
        let data = sample(64, 32, extent, |x, y| x + 2.0 * y); // 0 at lower left, 4 at upper right
        let path = dir.file("pos.png");
        field_map(&path, &map_fixture(&data, 64, 32, extent)).expect("field map");
        let img = Image::read(&path);
        let layout = MapPlan::new(&map_fixture(&data, 64, 32, extent), false).layout;
        assert_eq!((img.width, img.height), (layout.width, layout.height));
        assert_eq!((layout.plot_w, layout.plot_h), (900, 450), "aspect ratio of the extent");
        let (x0, y0) = layout.plot_origin();
        let (w, h) = (layout.plot_w as i32, layout.plot_h as i32);
        // Upper right: viridis' yellow end; lower left: its dark purple end (one cell in).
        let (r, g, b) = img.at(x0 + w - 8, y0 + 8);
        assert!(r > 200 && g > 200 && b < 80, "high end {:?}", (r, g, b));
        let (r, g, b) = img.at(x0 + 8, y0 + h - 8);
        assert!(r < 90 && g < 40 && b > 60 && b > r, "low end {:?}", (r, g, b));
        // Colour bar: yellow at the top, purple at the bottom.
        let bar_x = layout.bar_x() + BAR_W as i32 / 2;
        let (r, g, b) = img.at(bar_x, y0 + 2);
        assert!(r > 240 && g > 220 && b < 50, "bar top {:?}", (r, g, b));
        let (r, g, b) = img.at(bar_x, y0 + h - 3);
        assert!(r < 90 && g < 40 && b > 60, "bar bottom {:?}", (r, g, b));
    }

    #[test]
    fn signed_field_uses_diverging_map_centred_at_zero() {
        let dir = Scratch::new("diverging");
        let extent = [0.0, 2.0 * PI, 0.0, PI];
        let data = sample(128, 64, extent, |x, y| x.sin() * y.cos());
        let scale = ColourScale::for_data(&data);
        assert_eq!(scale.table, &RDBU);
        assert_eq!(scale.lo, -scale.hi);
        let path = dir.file("sincos.png");
        field_map(&path, &map_fixture(&data, 128, 64, extent)).expect("field map");
        let img = Image::read(&path);
        let layout = MapPlan::new(&map_fixture(&data, 128, 64, extent), false).layout;
        let (x0, y0) = layout.plot_origin();
        let (w, h) = (layout.plot_w as i32, layout.plot_h as i32);
        // (pi/2, ~0): +1, red; (3pi/2, ~0): -1, blue; (pi, pi/2): 0, near white.
        let (r, g, b) = img.at(x0 + w / 4, y0 + h - 3);
        assert!(r > 90 && g < 40 && b < 60, "positive {:?}", (r, g, b));
        let (r, g, b) = img.at(x0 + 3 * w / 4, y0 + h - 3);
        assert!(r < 40 && b > 80 && b > g, "negative {:?}", (r, g, b));
        let (r, g, b) = img.at(x0 + w / 2, y0 + h / 2);
        assert!(r > 220 && g > 220 && b > 220, "zero {:?}", (r, g, b));
        // A positive field with a tiny negative part stays on viridis.
        assert_eq!(ColourScale::for_data(&[-0.01, 0.5, 1.0]).table, &VIRIDIS);
    }

    #[test]
    fn awkward_maps_do_not_panic() {
        let dir = Scratch::new("awkward-maps");
        let path = dir.file("m.png");
        let unit = [0.0, 1.0, 0.0, 1.0];
        for (data, nx, ny) in [(vec![], 0, 0), (vec![1.0; 6], 2, 2), (vec![1.0; 4], 4, 0)] {
            let e = field_map(&path, &map_fixture(&data, nx, ny, unit)).expect_err("bad shape");
            assert!(matches!(e, PlotError::Shape { .. }), "{e}");
            assert!(e.to_string().contains("m.png"), "{e}");
        }
        for extent in [[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, f64::NAN, 1.0], [1.0, 0.0, 0.0, 1.0]] {
            let e = field_map(&path, &map_fixture(&[1.0], 1, 1, extent)).expect_err("bad extent");
            assert!(matches!(e, PlotError::Extent { .. }), "{e}");
        }
        assert!(!path.exists());

        let mut holes = sample(16, 16, unit, |x, y| x * y);
        holes[0] = f64::NAN;
        holes[17] = f64::INFINITY;
        let cases: Vec<(Vec<f64>, usize, usize, [f64; 4])> = vec![
            (vec![f64::NAN; 4], 2, 2, unit),
            (vec![3.0; 9], 3, 3, unit),
            (vec![0.0; 9], 3, 3, unit),
            (vec![7.0], 1, 1, unit),
            (holes, 16, 16, unit),
            (vec![-f64::MAX, f64::MAX], 2, 1, unit),
            (vec![1.0, 2.0], 2, 1, [0.0, 1e6, 0.0, 1e-6]),
            (vec![1.0, 2.0], 1, 2, [-1e300, 1e300, -1.0, 1.0]),
        ];
        let bare = FieldMap {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            colorbar_label: String::new(),
            ..map_fixture(&[1.0, 2.0], 2, 1, unit)
        };
        field_map(&dir.file("bare.png"), &bare).expect("no labels at all");
        for (k, (data, nx, ny, extent)) in cases.iter().enumerate() {
            let path = dir.file(&format!("case{k:02}.png"));
            field_map(&path, &map_fixture(data, *nx, *ny, *extent)).unwrap_or_else(|e| panic!("case {k}: {e}"));
            assert!(!Image::read(&path).is_uniform(), "case {k}");
        }
        // The all-NaN map is grey in the plot area.
        field_map(&path, &map_fixture(&[f64::NAN; 4], 2, 2, unit)).expect("nan map");
        let layout = MapPlan::new(&map_fixture(&[f64::NAN; 4], 2, 2, unit), false).layout;
        let (x0, y0) = layout.plot_origin();
        let grey = (MISSING.0, MISSING.1, MISSING.2);
        assert_eq!(Image::read(&path).at(x0 + 100, y0 + 100), grey);
        assert_eq!(dir.names().len(), cases.len() + 2, "only final files: {:?}", dir.names());
    }

    #[test]
    fn writes_are_atomic() {
        let dir = Scratch::new("atomic");
        // Success: only the final file.
        let path = dir.file("final.png");
        line_plot(&path, &line_fixture()).expect("line plot");
        assert!(path.is_file());
        // Overwriting works and keeps a single file.
        line_plot(&path, &line_fixture()).expect("overwrite");
        assert_eq!(dir.names(), vec!["final.png".to_string()]);
        // The rename fails (the target is a non-empty directory): error naming the path,
        // and the temporary file is removed.
        let blocked = dir.file("blocked.png");
        fs::create_dir(&blocked).expect("mkdir");
        fs::write(blocked.join("keep"), b"x").expect("write");
        let e = line_plot(&blocked, &line_fixture()).expect_err("rename onto a directory");
        assert!(matches!(e, PlotError::Write { .. }) && e.to_string().contains("blocked.png"), "{e}");
        let data = [1.0, 2.0, 3.0, 4.0];
        let e = field_map(&blocked, &map_fixture(&data, 2, 2, [0.0, 1.0, 0.0, 1.0])).expect_err("map too");
        assert!(matches!(e, PlotError::Write { .. }), "{e}");
        assert_eq!(dir.names(), vec!["blocked.png".to_string(), "final.png".to_string()]);
        // A missing directory: the encoder fails; an error naming the path.
        let missing = dir.file("no/such/dir/x.png");
        let e = line_plot(&missing, &line_fixture()).expect_err("missing dir");
        assert!(e.to_string().contains("x.png"), "{e}");
    }

    #[test]
    fn tick_labels_are_short() {
        let t = Ticks::linear(-0.04, 1.04, 8);
        assert_eq!(t.major.iter().map(|&v| t.label(v)).collect::<Vec<_>>(), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let t = Ticks::linear(0.0, 3e6, 6);
        assert_eq!(t.label(1.5e6), "1.5e6");
        assert_eq!(t.label(2e6), "2e6");
        let t = Ticks::log(1e-7, 1.0);
        assert_eq!(t.major.iter().map(|&v| t.label(v)).collect::<Vec<_>>(), ["1e-7", "1e-6", "1e-5", "1e-4", "0.001", "0.01", "0.1", "1"]);
        // Less than a decade: linear-looking ticks, all inside the range.
        let t = Ticks::log(2.0, 3.0);
        assert!(t.major.len() >= 3 && t.major.iter().all(|v| (2.0..=3.0).contains(v)), "{:?}", t.major);
    }

    #[test]
    fn large_map_renders_quickly() {
        let dir = Scratch::new("large");
        let n = 1024;
        let extent = [0.0, 1.0, 0.0, 1.0];
        let data = sample(n, n, extent, |x, y| (8.0 * x).sin() * (6.0 * y).cos() + 0.3);
        let path = dir.file("big.png");
        let start = Instant::now();
        field_map(&path, &map_fixture(&data, n, n, extent)).expect("1024^2 map");
        let elapsed = start.elapsed();
        eprintln!("1024x1024 field map: {elapsed:?}");
        // Generous bound for unoptimised or loaded CI machines; release is far below.
        assert!(elapsed.as_secs_f64() < 10.0, "{elapsed:?}");
    }
}

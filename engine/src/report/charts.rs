//! Static SVG charts for the reports: one metric per run as horizontal bars with confidence
//! whiskers ([`bar_chart`]), quality against throughput ([`scatter`]), and one metric per label
//! set for a few runs ([`grouped_bars`]).
//!
//! The SVG is written by hand rather than by a plotting library so that every chart is one
//! self-contained element: no JavaScript, fonts, stylesheets or other resources, which the HTML
//! report's Content-Security-Policy forbids anyway, and the same text works inline in
//! `report.html` and as a file linked from `report.md`. Coordinates and values are printed with a
//! fixed precision and nothing depends on time, randomness or hash order, so the same results give
//! the same bytes and committed reports diff cleanly.
//!
//! Run names and label sets come from user files: they are XML-escaped, and those too long for
//! the layout are shortened with "…" while a `<title>` keeps the full text for hovering. Text
//! widths are estimated (no font metrics are available), generously, so that labels fit.

/// One bar: a run's metric value with its 95% confidence interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    /// Not drawn when not finite; the row then shows "–".
    pub value: f64,
    /// Lower and upper bound, drawn as a whisker clipped to the axis.
    pub interval: Option<(f64, f64)>,
    /// Draws the bar in the strong colour (the best run).
    pub highlight: bool,
    /// Printed in muted text after the value, e.g. "n.s.".
    pub note: Option<String>,
}

/// One point of a scatter: e.g. a run, MRR (y) against items/s (x).
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    pub label: String,
    pub x: f64,
    pub y: f64,
    /// Points of one group share a colour and a legend entry.
    pub group: String,
}

/// One series of grouped bars: a value per group, in the order of the groups.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    /// `None` (or a missing or non-finite value) is drawn as absent, with a "–".
    pub values: Vec<Option<f64>>,
}

const WIDTH: f64 = 760.0;
/// Space between the figure's edge and anything drawn in it.
const MARGIN: f64 = 12.0;
const FONT: f64 = 12.0;
const SMALL_FONT: f64 = 11.0;
const TITLE_FONT: f64 = 14.0;
/// Average advance of a sans-serif glyph in ems, rounded up so that estimated widths leave room.
const CHAR_EM: f64 = 0.6;
/// Height of the band at the top that holds the title.
const TITLE_BAND: f64 = 34.0;
/// Height below a plot for the tick labels and the axis label.
const AXIS_BAND: f64 = 46.0;
/// Gap between a row's label and the plot.
const LABEL_GAP: f64 = 8.0;
/// Room right of a value axis for the value and note printed after a bar that reaches its end.
const VALUE_ROOM: f64 = 96.0;
const BAR_ROW: f64 = 22.0;
const BAR_THICKNESS: f64 = 14.0;
/// Each bar of a group of bars takes this much height, gap included.
const GROUPED_BAR_STEP: f64 = 14.0;
const GROUPED_BAR_THICKNESS: f64 = 12.0;
/// Space between two groups of bars.
const GROUP_GAP: f64 = 12.0;
const LEGEND_ROW: f64 = 18.0;
/// Height added at the bottom for a footnote.
const FOOTNOTE_BAND: f64 = 18.0;
/// Height of the plotting area of a scatter.
const SCATTER_HEIGHT: f64 = 340.0;
/// Room left of a scatter's plot for the y tick labels and the rotated y axis label.
const SCATTER_LEFT: f64 = 72.0;
const POINT_RADIUS: f64 = 4.5;
/// Longest row label shown in full; ~290 px at the label font.
const MAX_LABEL_CHARS: usize = 40;
/// Point labels are kept short so that they rarely collide in a crowded scatter.
const MAX_POINT_LABEL_CHARS: usize = 24;
/// Legend entries wrap onto more rows, so they can be longer (the study's family names reach 45).
const MAX_LEGEND_CHARS: usize = 60;

const INK: &str = "#222222";
/// Grey that still has a 4.5:1 contrast on white.
const MUTED: &str = "#6f6f6f";
const GRID: &str = "#e3e3e3";
const AXIS_LINE: &str = "#8c8c8c";
const WHISKER: &str = "#1a1a1a";
/// Okabe–Ito blue for the highlighted bar, the others in a pale grey-blue so that it stands out.
const HIGHLIGHT: &str = "#0072b2";
const PLAIN_BAR: &str = "#b4c2ce";
/// The Okabe–Ito colour-blind-safe palette, ordered so that the first colours are the most
/// distinct from each other and yellow, faint on white, comes last.
const PALETTE: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000", "#f0e442",
];

/// Horizontal bars, one per run, with confidence-interval whiskers and the value printed after
/// each bar. The axis runs from 0 to 1 when all values fit, else to a round number above the
/// largest value.
pub fn bar_chart(title: &str, axis_label: &str, bars: &[Bar]) -> String {
    let values: Vec<f64> = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return no_data(title, None);
    }
    let axis = Axis::Linear(LinearAxis::from_zero(&values));
    let labels = bars.iter().map(|b| b.label.as_str());
    let frame = Frame::beside_labels(labels, TITLE_BAND, bars.len() as f64 * BAR_ROW);
    let mut canvas = Canvas::default();
    draw_title(&mut canvas, title);
    draw_x_axis(&mut canvas, &frame, &axis, axis_label);
    for (row, bar) in bars.iter().enumerate() {
        let middle = frame.top + (row as f64 + 0.5) * BAR_ROW;
        draw_bar_row(&mut canvas, &frame, &axis, bar, middle);
    }
    canvas.finish(title, frame.bottom + AXIS_BAND)
}

/// A scatter with a linear y axis and a linear or logarithmic x axis, each point labelled and
/// coloured by its group. Points that cannot be placed (a non-finite coordinate, or x ≤ 0 on a
/// log scale) are listed in a footnote instead.
pub fn scatter(title: &str, x_label: &str, y_label: &str, points: &[Point], log_x: bool) -> String {
    let (plotted, left_out): (Vec<&Point>, Vec<&Point>) = points
        .iter()
        .partition(|p| usable_x(p.x, log_x) && p.y.is_finite());
    let footnote = not_plotted_note(&left_out, x_label, y_label, log_x);
    if plotted.is_empty() {
        return no_data(title, footnote.as_deref());
    }
    let groups = in_first_seen_order(plotted.iter().map(|p| p.group.as_str()));
    let mut canvas = Canvas::default();
    draw_title(&mut canvas, title);
    let entries: Vec<(&str, &str)> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (*g, colour(i)))
        .collect();
    let legend_height = draw_legend(&mut canvas, TITLE_BAND, &entries, Marker::Dot);
    let top = TITLE_BAND + legend_height + 10.0;
    let frame = Frame {
        left: SCATTER_LEFT,
        right: WIDTH - MARGIN - 8.0,
        top,
        bottom: top + SCATTER_HEIGHT,
    };
    let xs: Vec<f64> = plotted.iter().map(|p| p.x).collect();
    let ys: Vec<f64> = plotted.iter().map(|p| p.y).collect();
    let x_axis = if log_x {
        Axis::Log(LogAxis::covering(&xs))
    } else {
        Axis::Linear(LinearAxis::covering(&xs))
    };
    let y_axis = Axis::Linear(LinearAxis::covering(&ys));
    draw_y_axis(&mut canvas, &frame, &y_axis, y_label);
    draw_x_axis(&mut canvas, &frame, &x_axis, x_label);
    let centres: Vec<(f64, f64)> = plotted
        .iter()
        .map(|p| (frame.x(x_axis.fraction(p.x)), frame.y(y_axis.fraction(p.y))))
        .collect();
    for (point, &centre) in plotted.iter().zip(&centres) {
        let group = groups.iter().position(|g| *g == point.group).unwrap_or(0);
        draw_point(&mut canvas, "point", centre, colour(group));
    }
    draw_point_labels(&mut canvas, &frame, &plotted, &centres);
    let mut height = frame.bottom + AXIS_BAND;
    if let Some(note) = footnote {
        draw_footnote(&mut canvas, height, &note);
        height += FOOTNOTE_BAND;
    }
    canvas.finish(title, height)
}

/// Horizontal bars in groups (e.g. label sets), one bar per series (e.g. a run) in each group,
/// with a legend of the series.
pub fn grouped_bars(title: &str, axis_label: &str, groups: &[String], series: &[Series]) -> String {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| (0..groups.len()).filter_map(|g| series_value(s, g)))
        .collect();
    if values.is_empty() {
        return no_data(title, None);
    }
    let axis = Axis::Linear(LinearAxis::from_zero(&values));
    let mut canvas = Canvas::default();
    draw_title(&mut canvas, title);
    let entries: Vec<(&str, &str)> = series
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), colour(i)))
        .collect();
    let legend_height = draw_legend(&mut canvas, TITLE_BAND, &entries, Marker::Square);
    let block = series.len() as f64 * GROUPED_BAR_STEP + GROUP_GAP;
    let labels = groups.iter().map(String::as_str);
    let frame = Frame::beside_labels(
        labels,
        TITLE_BAND + legend_height + 6.0,
        groups.len() as f64 * block,
    );
    draw_x_axis(&mut canvas, &frame, &axis, axis_label);
    let attributes = format!(r#"font-size="{FONT}" text-anchor="end""#);
    for (g, group) in groups.iter().enumerate() {
        let top = frame.top + g as f64 * block + GROUP_GAP / 2.0;
        let middle = top + series.len() as f64 * GROUPED_BAR_STEP / 2.0;
        canvas.label(
            frame.left - LABEL_GAP,
            middle + 4.0,
            &attributes,
            group,
            MAX_LABEL_CHARS,
        );
        for (s, one) in series.iter().enumerate() {
            let middle = top + (s as f64 + 0.5) * GROUPED_BAR_STEP;
            match series_value(one, g) {
                Some(value) => {
                    draw_grouped_bar(&mut canvas, &frame, &axis, value, middle, colour(s))
                }
                None => draw_no_value(&mut canvas, &frame, middle),
            }
        }
    }
    canvas.finish(title, frame.bottom + AXIS_BAND)
}

/// The chart for input with nothing to draw, so that reports still show where it would be.
fn no_data(title: &str, note: Option<&str>) -> String {
    let mut canvas = Canvas::default();
    draw_title(&mut canvas, title);
    let attributes = format!(r#"font-size="{FONT}" text-anchor="middle" fill="{MUTED}""#);
    canvas.text(WIDTH / 2.0, 60.0, &attributes, "no data");
    let mut height = 80.0;
    if let Some(note) = note {
        draw_footnote(&mut canvas, height, note);
        height += FOOTNOTE_BAND;
    }
    canvas.finish(title, height)
}

fn draw_title(canvas: &mut Canvas, title: &str) {
    let attributes = format!(r#"font-size="{TITLE_FONT}" font-weight="bold""#);
    let max_chars = chars_fitting(WIDTH - 2.0 * MARGIN, TITLE_FONT);
    canvas.label(MARGIN, 22.0, &attributes, title, max_chars);
}

/// Small muted text at the bottom, its top at `top`.
fn draw_footnote(canvas: &mut Canvas, top: f64, note: &str) {
    let attributes = format!(r#"class="footnote" font-size="{SMALL_FONT}" fill="{MUTED}""#);
    let max_chars = chars_fitting(WIDTH - 2.0 * MARGIN, SMALL_FONT);
    canvas.label(MARGIN, top + 8.0, &attributes, note, max_chars);
}

/// A bar chart row: label, bar, whisker, then the value and note.
fn draw_bar_row(canvas: &mut Canvas, frame: &Frame, axis: &Axis, bar: &Bar, middle: f64) {
    let weight = if bar.highlight {
        r#" font-weight="bold""#
    } else {
        ""
    };
    let attributes = format!(r#"font-size="{FONT}" text-anchor="end"{weight}"#);
    canvas.label(
        frame.left - LABEL_GAP,
        middle + 4.0,
        &attributes,
        &bar.label,
        MAX_LABEL_CHARS,
    );
    if !bar.value.is_finite() {
        draw_no_value(canvas, frame, middle);
        return;
    }
    let end = frame.x(axis.fraction(bar.value));
    let fill = if bar.highlight { HIGHLIGHT } else { PLAIN_BAR };
    canvas.rect(
        "bar",
        (frame.left, middle - BAR_THICKNESS / 2.0),
        (end - frame.left, BAR_THICKNESS),
        fill,
    );
    let whisker_end = bar
        .interval
        .and_then(|interval| draw_whisker(canvas, frame, axis, interval, middle));
    let note = bar.note.as_deref().map_or(String::new(), |note| {
        format!(
            r#" <tspan font-weight="normal" fill="{MUTED}">{}</tspan>"#,
            escape(note)
        )
    });
    canvas.push(&format!(
        r#"<text x="{:.1}" y="{:.1}" font-size="{SMALL_FONT}"{weight}>{:.4}{note}</text>"#,
        whisker_end.map_or(end, |x| x.max(end)) + 5.0,
        middle + 4.0,
        bar.value,
    ));
}

/// Draws an interval as a whisker along the bar; returns the x of its right end, or `None` when
/// a bound is not finite.
fn draw_whisker(
    canvas: &mut Canvas,
    frame: &Frame,
    axis: &Axis,
    (lo, hi): (f64, f64),
    middle: f64,
) -> Option<f64> {
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    let ends = [axis.fraction(lo.min(hi)), axis.fraction(lo.max(hi))];
    let [left, right] = ends.map(|fraction| frame.x(fraction));
    let mut path = format!("M{left:.1} {middle:.1}H{right:.1}");
    // An end clipped to the axis gets no cap, so that the whisker reads as going on past it.
    for (x, fraction) in [left, right].into_iter().zip(ends) {
        if (0.0..=1.0).contains(&fraction) {
            path.push_str(&format!("M{x:.1} {:.1}V{:.1}", middle - 4.0, middle + 4.0));
        }
    }
    canvas.push(&format!(
        r#"<path class="whisker" d="{path}" fill="none" stroke="{WHISKER}" stroke-width="1.2"/>"#
    ));
    Some(right)
}

fn draw_grouped_bar(
    canvas: &mut Canvas,
    frame: &Frame,
    axis: &Axis,
    value: f64,
    middle: f64,
    fill: &str,
) {
    let end = frame.x(axis.fraction(value));
    let size = (end - frame.left, GROUPED_BAR_THICKNESS);
    canvas.rect(
        "bar",
        (frame.left, middle - GROUPED_BAR_THICKNESS / 2.0),
        size,
        fill,
    );
    let attributes = format!(r#"font-size="{}" fill="{MUTED}""#, SMALL_FONT - 1.0);
    canvas.text(end + 4.0, middle + 3.5, &attributes, &format!("{value:.4}"));
}

/// Marks a row whose value is missing, so that it does not read as a zero.
fn draw_no_value(canvas: &mut Canvas, frame: &Frame, middle: f64) {
    let attributes = format!(r#"class="no-value" font-size="{FONT}" fill="{MUTED}""#);
    canvas.text(frame.left + 4.0, middle + 4.0, &attributes, "–");
}

/// Gridlines, tick labels and the axis label of a horizontal axis, below and across `frame`.
fn draw_x_axis(canvas: &mut Canvas, frame: &Frame, axis: &Axis, label: &str) {
    let tick_attributes =
        format!(r#"class="x-tick" font-size="{SMALL_FONT}" text-anchor="middle" fill="{MUTED}""#);
    for (fraction, text) in axis.ticks() {
        let x = frame.x(fraction);
        canvas.line((x, frame.top), (x, frame.bottom), GRID);
        canvas.text(x, frame.bottom + 15.0, &tick_attributes, &text);
    }
    for fraction in axis.minor_ticks() {
        let x = frame.x(fraction);
        canvas.line((x, frame.bottom), (x, frame.bottom + 3.0), AXIS_LINE);
    }
    canvas.line(
        (frame.left, frame.bottom),
        (frame.right, frame.bottom),
        AXIS_LINE,
    );
    canvas.line(
        (frame.left, frame.top),
        (frame.left, frame.bottom),
        AXIS_LINE,
    );
    let attributes = format!(r#"font-size="{FONT}" text-anchor="middle""#);
    let max_chars = chars_fitting(frame.right - frame.left, FONT);
    let middle = (frame.left + frame.right) / 2.0;
    canvas.label(middle, frame.bottom + 36.0, &attributes, label, max_chars);
}

/// Gridlines, tick labels and the rotated axis label of a vertical axis, left of and across
/// `frame`.
fn draw_y_axis(canvas: &mut Canvas, frame: &Frame, axis: &Axis, label: &str) {
    let tick_attributes =
        format!(r#"class="y-tick" font-size="{SMALL_FONT}" text-anchor="end" fill="{MUTED}""#);
    for (fraction, text) in axis.ticks() {
        let y = frame.y(fraction);
        canvas.line((frame.left, y), (frame.right, y), GRID);
        canvas.text(frame.left - 6.0, y + 4.0, &tick_attributes, &text);
    }
    let (x, y) = (MARGIN + 6.0, (frame.top + frame.bottom) / 2.0);
    let attributes =
        format!(r#"font-size="{FONT}" text-anchor="middle" transform="rotate(-90 {x:.1} {y:.1})""#);
    let max_chars = chars_fitting(frame.bottom - frame.top, FONT);
    canvas.label(x, y, &attributes, label, max_chars);
}

fn draw_point(canvas: &mut Canvas, class: &str, (x, y): (f64, f64), fill: &str) {
    canvas.push(&format!(
        r##"<circle class="{class}" cx="{x:.1}" cy="{y:.1}" r="{POINT_RADIUS}" fill="{fill}" fill-opacity="0.9" stroke="#ffffff" stroke-width="1"/>"##
    ));
}

/// Labels the points in order, each where it stays inside the figure and clear of the points and
/// of the labels placed before it, as far as a few spots around the point allow.
fn draw_point_labels(
    canvas: &mut Canvas,
    frame: &Frame,
    points: &[&Point],
    centres: &[(f64, f64)],
) {
    let mut taken: Vec<Area> = centres
        .iter()
        .map(|&centre| Area::around(centre, POINT_RADIUS))
        .collect();
    for (point, &centre) in points.iter().zip(centres) {
        let shown = shortened(&point.label, MAX_POINT_LABEL_CHARS);
        let width = text_width(shown.as_deref().unwrap_or(&point.label), SMALL_FONT);
        let spot = place_label(centre, width, frame, &taken);
        taken.push(spot.area);
        let attributes = format!(
            r#"font-size="{SMALL_FONT}" text-anchor="{}""#,
            spot.anchor.name()
        );
        canvas.label(
            spot.x,
            spot.baseline,
            &attributes,
            &point.label,
            MAX_POINT_LABEL_CHARS,
        );
    }
}

/// Which part of a text sits at its x (SVG's `text-anchor`).
#[derive(Clone, Copy)]
enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }

    /// The left edge of a text `width` wide anchored at `x`.
    fn left_edge(self, x: f64, width: f64) -> f64 {
        match self {
            Anchor::Start => x,
            Anchor::Middle => x - width / 2.0,
            Anchor::End => x - width,
        }
    }
}

/// Where a label goes and the area it covers.
struct Spot {
    x: f64,
    baseline: f64,
    anchor: Anchor,
    area: Area,
}

impl Spot {
    fn new((x, baseline): (f64, f64), anchor: Anchor, width: f64) -> Spot {
        let left = anchor.left_edge(x, width);
        let area = Area {
            left,
            right: left + width,
            top: baseline - 0.8 * SMALL_FONT,
            bottom: baseline + 0.25 * SMALL_FONT,
        };
        Spot {
            x,
            baseline,
            anchor,
            area,
        }
    }

    /// How much of the spot is covered by `taken` areas; infinite outside the plot, so that a
    /// label never runs off the figure while any spot inside remains.
    fn crowding(&self, frame: &Frame, taken: &[Area]) -> f64 {
        if !self.area.inside(frame) {
            return f64::INFINITY;
        }
        taken.iter().map(|t| t.overlap(&self.area)).sum()
    }
}

/// The least crowded of a few spots around the point, preferring (on ties) right of it, then
/// left, above, below, and the diagonals.
fn place_label((x, y): (f64, f64), width: f64, frame: &Frame, taken: &[Area]) -> Spot {
    const OFFSETS: [(f64, f64, Anchor); 8] = [
        (7.0, 4.0, Anchor::Start),
        (-7.0, 4.0, Anchor::End),
        (0.0, -8.0, Anchor::Middle),
        (0.0, 16.0, Anchor::Middle),
        (4.0, -8.0, Anchor::Start),
        (-4.0, -8.0, Anchor::End),
        (4.0, 16.0, Anchor::Start),
        (-4.0, 16.0, Anchor::End),
    ];
    OFFSETS
        .map(|(dx, dy, anchor)| Spot::new((x + dx, y + dy), anchor, width))
        .into_iter()
        .map(|spot| (spot.crowding(frame, taken), spot))
        .min_by(|(a, _), (b, _)| a.total_cmp(b))
        .map(|(_, spot)| spot)
        .expect("spots to choose from")
}

/// An axis-aligned rectangle of the figure.
struct Area {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Area {
    fn around((x, y): (f64, f64), radius: f64) -> Area {
        Area {
            left: x - radius,
            right: x + radius,
            top: y - radius,
            bottom: y + radius,
        }
    }

    /// The area the two have in common.
    fn overlap(&self, other: &Area) -> f64 {
        let width = self.right.min(other.right) - self.left.max(other.left);
        let height = self.bottom.min(other.bottom) - self.top.max(other.top);
        width.max(0.0) * height.max(0.0)
    }
    /// Inside the plot vertically; horizontally inside the figure, as labels may use the margin.
    fn inside(&self, frame: &Frame) -> bool {
        self.left >= frame.left
            && self.right <= WIDTH - 4.0
            && self.top >= frame.top
            && self.bottom <= frame.bottom
    }
}

/// How a legend entry shows its colour: like the chart's bars or like its points.
enum Marker {
    Square,
    Dot,
}

/// Draws legend entries left to right from `top`, wrapping onto more rows when needed; returns
/// the height used.
fn draw_legend(canvas: &mut Canvas, top: f64, entries: &[(&str, &str)], marker: Marker) -> f64 {
    let attributes = format!(r#"font-size="{SMALL_FONT}""#);
    let (mut x, mut middle) = (MARGIN, top + LEGEND_ROW / 2.0 - 4.0);
    for &(name, fill) in entries {
        let shown = shortened(name, MAX_LEGEND_CHARS);
        let width = 14.0 + text_width(shown.as_deref().unwrap_or(name), SMALL_FONT) + 12.0;
        if x > MARGIN && x + width > WIDTH - MARGIN {
            x = MARGIN;
            middle += LEGEND_ROW;
        }
        canvas.push(r#"<g class="legend-entry">"#);
        match marker {
            Marker::Square => canvas.rect("swatch", (x, middle - 5.0), (10.0, 10.0), fill),
            Marker::Dot => draw_point(canvas, "swatch", (x + 5.0, middle), fill),
        }
        canvas.label(x + 14.0, middle + 4.0, &attributes, name, MAX_LEGEND_CHARS);
        canvas.push("</g>");
        x += width;
    }
    middle + LEGEND_ROW / 2.0 + 4.0 - top
}

/// The plotting area: labels go left of it, tick labels below it.
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    /// A plot of rows `height` high from `top`, with room on its left for the longest label
    /// (up to [`MAX_LABEL_CHARS`]) and on its right for values printed after the bars.
    fn beside_labels<'a>(labels: impl Iterator<Item = &'a str>, top: f64, height: f64) -> Frame {
        let longest = labels
            .map(|l| l.chars().count().min(MAX_LABEL_CHARS))
            .max()
            .unwrap_or(0);
        Frame {
            left: MARGIN + longest as f64 * CHAR_EM * FONT + LABEL_GAP,
            right: WIDTH - VALUE_ROOM,
            top,
            bottom: top + height,
        }
    }

    /// The x of a fraction of the horizontal axis, clipped to the plot.
    fn x(&self, fraction: f64) -> f64 {
        self.left + fraction.clamp(0.0, 1.0) * (self.right - self.left)
    }

    /// The y of a fraction of the vertical axis (upwards), clipped to the plot.
    fn y(&self, fraction: f64) -> f64 {
        self.bottom - fraction.clamp(0.0, 1.0) * (self.bottom - self.top)
    }
}

/// An axis maps values to fractions of its length (0 at the start, 1 at the end; outside that
/// for values off the axis) and says where its ticks go.
enum Axis {
    Linear(LinearAxis),
    Log(LogAxis),
}

impl Axis {
    fn fraction(&self, value: f64) -> f64 {
        match self {
            Axis::Linear(axis) => axis.fraction(value),
            Axis::Log(axis) => axis.fraction(value),
        }
    }

    /// Labelled ticks: where they go (as fractions) and their text.
    fn ticks(&self) -> Vec<(f64, String)> {
        match self {
            Axis::Linear(axis) => axis
                .ticks()
                .map(|(value, text)| (axis.fraction(value), text))
                .collect(),
            Axis::Log(axis) => (axis.first..=axis.last)
                .map(|decade| (axis.fraction(10f64.powi(decade)), decade_label(decade)))
                .collect(),
        }
    }

    /// Unlabelled ticks at 2, 3, …, 9 times each decade, so that a log scale reads as one.
    fn minor_ticks(&self) -> Vec<f64> {
        match self {
            Axis::Linear(_) => Vec::new(),
            Axis::Log(axis) => (axis.first..axis.last)
                .flat_map(|decade| {
                    (2..=9).map(move |m| axis.fraction(f64::from(m) * 10f64.powi(decade)))
                })
                .collect(),
        }
    }
}

/// A linear axis with ends on ticks: from `first` to `last` times the step.
struct LinearAxis {
    first: i64,
    last: i64,
    step: Step,
}

impl LinearAxis {
    /// From 0 to 1 when all values fit, so that charts of metrics in [0, 1] share a scale;
    /// otherwise from 0 to the first tick at or above the largest value.
    fn from_zero(values: &[f64]) -> LinearAxis {
        let largest = values.iter().copied().fold(0.0, f64::max);
        let top = if largest <= 1.0 { 1.0 } else { largest };
        let step = Step::dividing(top, 5.0);
        LinearAxis {
            first: 0,
            last: step.ticks_up_to(top),
            step,
        }
    }

    /// From a tick below the smallest value to one above the largest, with a little room around
    /// them so that points do not sit on the frame, but not below 0 for values that are not.
    fn covering(values: &[f64]) -> LinearAxis {
        let smallest = values.iter().copied().fold(f64::INFINITY, f64::min);
        let largest = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let room = if largest > smallest {
            (largest - smallest) * 0.05
        } else if smallest == 0.0 {
            1.0
        } else {
            smallest.abs() * 0.1
        };
        let low = if smallest >= 0.0 {
            (smallest - room).max(0.0)
        } else {
            smallest - room
        };
        let high = largest + room;
        let step = Step::dividing(high - low, 5.0);
        LinearAxis {
            first: step.ticks_down_to(low),
            last: step.ticks_up_to(high),
            step,
        }
    }

    fn fraction(&self, value: f64) -> f64 {
        let size = self.step.size();
        (value / size - self.first as f64) / (self.last - self.first) as f64
    }

    /// Tick values with labels printed to the decimals the step needs.
    fn ticks(&self) -> impl Iterator<Item = (f64, String)> + '_ {
        (self.first..=self.last).map(|k| {
            let value = k as f64 * self.step.size();
            (value, format!("{value:.*}", self.step.decimals()))
        })
    }
}

/// A tick spacing of 1, 2 or 5 × 10^exponent, kept in parts so that tick labels get exactly the
/// decimals the spacing needs rather than whatever a floating-point logarithm rounds to.
#[derive(Clone, Copy)]
struct Step {
    mantissa: u8,
    exponent: i32,
}

impl Step {
    /// Slack for ratios that floating point puts a hair off a whole number.
    const SLACK: f64 = 1e-9;

    /// The smallest nice step that splits a positive `span` into at most `parts` intervals.
    fn dividing(span: f64, parts: f64) -> Step {
        let raw = span / parts;
        let exponent = raw.log10().floor() as i32;
        [1, 2, 5]
            .into_iter()
            .map(|mantissa| Step { mantissa, exponent })
            .find(|step| step.size() >= raw * (1.0 - Self::SLACK))
            .unwrap_or(Step {
                mantissa: 1,
                exponent: exponent + 1,
            })
    }

    fn size(self) -> f64 {
        f64::from(self.mantissa) * 10f64.powi(self.exponent)
    }

    fn decimals(self) -> usize {
        self.exponent.min(0).unsigned_abs() as usize
    }

    /// The number of steps to the first tick at or above `value`.
    fn ticks_up_to(self, value: f64) -> i64 {
        (value / self.size() - Self::SLACK).ceil() as i64
    }

    /// The number of steps to the last tick at or below `value`.
    fn ticks_down_to(self, value: f64) -> i64 {
        (value / self.size() + Self::SLACK).floor() as i64
    }
}

/// A logarithmic axis from 10^`first` to 10^`last`.
struct LogAxis {
    first: i32,
    last: i32,
}

impl LogAxis {
    /// The decades covering positive `values`, at least one.
    fn covering(values: &[f64]) -> LogAxis {
        let smallest = values.iter().copied().fold(f64::INFINITY, f64::min);
        let largest = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let first = smallest.log10().floor() as i32;
        let last = (largest.log10().ceil() as i32).max(first + 1);
        LogAxis { first, last }
    }

    fn fraction(&self, value: f64) -> f64 {
        (value.log10() - f64::from(self.first)) / f64::from(self.last - self.first)
    }
}

/// 10^`exponent` the way throughputs are read: 1, 10, 100, 1k, 10k, 100k, 1M, …
fn decade_label(exponent: i32) -> String {
    const SUFFIXES: [&str; 5] = ["", "k", "M", "G", "T"];
    match usize::try_from(exponent) {
        Ok(e) if e < 3 * SUFFIXES.len() => {
            format!("{}{}", 10u32.pow((e % 3) as u32), SUFFIXES[e / 3])
        }
        Ok(_) => format!("1e{exponent}"),
        Err(_) => format!(
            "{:.*}",
            exponent.unsigned_abs() as usize,
            10f64.powi(exponent)
        ),
    }
}

fn usable_x(x: f64, log_x: bool) -> bool {
    x.is_finite() && (!log_x || x > 0.0)
}

/// "not plotted: a, b (no items/s value); c (no MRR@10 value)", or `None` when all were plotted.
fn not_plotted_note(
    left_out: &[&Point],
    x_label: &str,
    y_label: &str,
    log_x: bool,
) -> Option<String> {
    let (no_x, no_y): (Vec<&Point>, Vec<&Point>) =
        left_out.iter().partition(|p| !usable_x(p.x, log_x));
    let reasons: Vec<String> = [(no_x, x_label), (no_y, y_label)]
        .into_iter()
        .filter(|(points, _)| !points.is_empty())
        .map(|(points, label)| {
            let names: Vec<&str> = points.iter().map(|p| p.label.as_str()).collect();
            format!("{} (no {} value)", names.join(", "), quantity(label))
        })
        .collect();
    (!reasons.is_empty()).then(|| format!("not plotted: {}", reasons.join("; ")))
}

/// The quantity an axis label names, without its explanation in parentheses:
/// "items/s (log scale)" → "items/s".
fn quantity(axis_label: &str) -> &str {
    axis_label.split(" (").next().unwrap_or(axis_label).trim()
}

/// Group names in the order they first appear, which fixes their colours and legend order.
fn in_first_seen_order<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if !seen.contains(&name) {
            seen.push(name);
        }
    }
    seen
}

/// The `index`th palette colour; colours repeat after the palette runs out.
fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

fn series_value(series: &Series, group: usize) -> Option<f64> {
    series
        .values
        .get(group)
        .copied()
        .flatten()
        .filter(|v| v.is_finite())
}

fn text_width(text: &str, font: f64) -> f64 {
    text.chars().count() as f64 * CHAR_EM * font
}

fn chars_fitting(width: f64, font: f64) -> usize {
    (width / (CHAR_EM * font)) as usize
}

/// `text` cut to `max_chars` with "…" in the middle, or `None` when it fits. The middle goes
/// because run names tend to differ at both ends (model and experiment).
fn shortened(text: &str, max_chars: usize) -> Option<String> {
    let count = text.chars().count();
    if count <= max_chars {
        return None;
    }
    let kept = max_chars.saturating_sub(1);
    let tail = kept / 3;
    let head: String = text.chars().take(kept - tail).collect();
    let end: String = text.chars().skip(count - tail).collect();
    Some(format!("{}…{}", head.trim_end(), end.trim_start()))
}

/// `text` safe in XML content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            // XML forbids most control characters even as character references.
            c if c.is_control() => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    escaped
}

/// The elements of a chart in drawing order: later ones paint over earlier ones.
#[derive(Default)]
struct Canvas {
    body: String,
}

impl Canvas {
    fn push(&mut self, element: &str) {
        self.body.push_str(element);
        self.body.push('\n');
    }

    fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str) {
        self.push(&format!(
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" shape-rendering="crispEdges"/>"#
        ));
    }

    fn rect(&mut self, class: &str, (x, y): (f64, f64), (width, height): (f64, f64), fill: &str) {
        self.push(&format!(
            r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{height:.1}" fill="{fill}"/>"#,
            width.max(0.0)
        ));
    }

    /// `attributes` are written as given; `text` is escaped.
    fn text(&mut self, x: f64, y: f64, attributes: &str, text: &str) {
        self.push(&format!(
            r#"<text x="{x:.1}" y="{y:.1}" {attributes}>{}</text>"#,
            escape(text)
        ));
    }

    /// Text shortened to `max_chars`, keeping the full text in a `<title>` shown on hover.
    fn label(&mut self, x: f64, y: f64, attributes: &str, text: &str, max_chars: usize) {
        match shortened(text, max_chars) {
            Some(short) => {
                self.push(&format!("<g><title>{}</title>", escape(text)));
                self.text(x, y, attributes, &short);
                self.push("</g>");
            }
            None => self.text(x, y, attributes, text),
        }
    }

    /// The `<svg>` element, `height` high, named by `title` for assistive technology.
    fn finish(self, title: &str, height: f64) -> String {
        let id = content_id(title, &self.body);
        format!(
            concat!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height:.0}" width="{width}" "#,
                r#"height="{height:.0}" role="img" aria-labelledby="{id}" font-family="sans-serif" fill="{ink}">"#,
                "\n<title id=\"{id}\">{title}</title>\n",
                "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n",
                "{body}</svg>\n",
            ),
            width = WIDTH,
            height = height.ceil(),
            id = id,
            ink = INK,
            title = escape(title),
            body = self.body,
        )
    }
}

/// An id for the chart's `<title>` that differs between charts inlined in one page, yet is the
/// same on every run (unlike a counter or a random id): an FNV-1a hash of the content.
fn content_id(title: &str, body: &str) -> String {
    let hash = title
        .bytes()
        .chain(body.bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("chart-{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, value: f64, interval: Option<(f64, f64)>) -> Bar {
        Bar {
            label: label.into(),
            value,
            interval,
            highlight: false,
            note: None,
        }
    }

    fn point(label: &str, x: f64, y: f64, group: &str) -> Point {
        Point {
            label: label.into(),
            x,
            y,
            group: group.into(),
        }
    }

    fn runs() -> Vec<Bar> {
        vec![
            Bar {
                highlight: true,
                ..bar("minilm+mpnet_concat (quickstart)", 0.61, Some((0.58, 0.64)))
            },
            Bar {
                note: Some("n.s.".into()),
                ..bar("mpnet", 0.6, Some((0.57, 0.63)))
            },
            bar("minilm", 0.52, None),
        ]
    }

    fn label_sets() -> (Vec<String>, Vec<Series>) {
        let groups = vec![
            "person".to_string(),
            "person, tie".to_string(),
            "car".to_string(),
        ];
        let series = vec![
            Series {
                name: "minilm".into(),
                values: vec![Some(0.5), Some(0.4), None],
            },
            Series {
                name: "clip".into(),
                values: vec![Some(0.7), Some(0.2), Some(0.9)],
            },
        ];
        (groups, series)
    }

    /// Checks that tags nest and close, attribute values are quoted and `&` only starts entities.
    fn assert_well_formed(svg: &str) {
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" "),
            "{svg}"
        );
        assert!(
            svg.contains("\n<title id=\"chart-"),
            "title is the first child: {svg}"
        );
        for entity in svg.split('&').skip(1) {
            let known = ["amp;", "lt;", "gt;", "quot;", "apos;"];
            assert!(
                known.iter().any(|e| entity.starts_with(e)),
                "bare & in {svg}"
            );
        }
        let mut open = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = start + rest[start..].find('>').expect("tag closed");
            let tag = &rest[start + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(open.pop(), Some(name), "close tag matches in {svg}");
            } else {
                let (name, attributes) = tag
                    .split_once(' ')
                    .unwrap_or((tag.trim_end_matches('/'), ""));
                assert_attributes_quoted(attributes.trim_end_matches('/'));
                if !tag.ends_with('/') {
                    open.push(name);
                }
            }
            rest = &rest[end + 1..];
        }
        assert!(open.is_empty(), "unclosed {open:?}");
        assert_eq!(rest, "\n");
    }

    fn assert_attributes_quoted(mut attributes: &str) {
        while !attributes.trim().is_empty() {
            let (name, value) = attributes
                .trim_start()
                .split_once("=\"")
                .expect("name=\"value\"");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "attribute {name:?}"
            );
            let end = value.find('"').expect("closing quote");
            assert!(!value[..end].contains('<'), "< in attribute value");
            attributes = &value[end + 1..];
        }
    }

    /// The texts of the `<text>` elements that have `class`.
    fn texts_of_class(svg: &str, class: &str) -> Vec<String> {
        let marker = format!(" class=\"{class}\"");
        svg.match_indices(&marker)
            .map(|(at, _)| {
                let start = at + svg[at..].find('>').unwrap() + 1;
                svg[start..start + svg[start..].find('<').unwrap()].to_string()
            })
            .collect()
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    fn all_charts() -> Vec<String> {
        let (groups, series) = label_sets();
        let points = vec![
            point("a", 30.0, 0.5, "one"),
            point("b", 40_000.0, 0.6, "two"),
        ];
        vec![
            bar_chart("MRR@10", "MRR@10", &runs()),
            scatter("MRR against throughput", "items/s", "MRR@10", &points, true),
            grouped_bars("Label sets", "MRR@10", &groups, &series),
        ]
    }

    #[test]
    fn charts_are_well_formed_and_deterministic() {
        for (svg, again) in all_charts().into_iter().zip(all_charts()) {
            assert_well_formed(&svg);
            assert_eq!(svg, again);
            assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
            assert!(svg.contains(r#"role="img" aria-labelledby="chart-"#));
            assert!(!svg.contains("<script") && !svg.contains("<style") && !svg.contains("url("));
        }
    }

    #[test]
    fn user_text_is_escaped() {
        let nasty = r#"a<b & "c" 'd'"#;
        let escaped = "a&lt;b &amp; &quot;c&quot; &apos;d&apos;";
        let groups = vec![nasty.to_string()];
        let series = vec![Series {
            name: nasty.into(),
            values: vec![Some(0.5)],
        }];
        let charts = [
            bar_chart(
                nasty,
                nasty,
                &[Bar {
                    note: Some(nasty.into()),
                    ..bar(nasty, 0.5, None)
                }],
            ),
            scatter(
                nasty,
                nasty,
                nasty,
                &[
                    point(nasty, 1.0, 1.0, nasty),
                    point(nasty, f64::NAN, 1.0, nasty),
                ],
                false,
            ),
            grouped_bars(nasty, nasty, &groups, &series),
        ];
        for svg in charts {
            assert_well_formed(&svg);
            assert!(!svg.contains(nasty));
            assert!(svg.contains(escaped), "{svg}");
        }
    }

    #[test]
    fn bar_chart_draws_a_bar_per_value_and_a_whisker_per_interval() {
        let svg = bar_chart("MRR", "MRR", &runs());
        assert_eq!(count(&svg, r#"<rect class="bar""#), 3);
        assert_eq!(count(&svg, r#"<path class="whisker""#), 2);
        assert_eq!(count(&svg, HIGHLIGHT), 1);
        assert!(svg.contains(">0.6100</text>"));
        assert!(svg.contains(
            ">0.6000 <tspan font-weight=\"normal\" fill=\"#6f6f6f\">n.s.</tspan></text>"
        ));
        assert_eq!(
            texts_of_class(&svg, "x-tick"),
            ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
        );
    }

    #[test]
    fn bar_chart_grows_with_the_bars_and_skips_non_finite_values() {
        let height = |svg: &str| {
            svg.split("height=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        let mut bars = runs();
        let short = bar_chart("MRR", "MRR", &bars);
        bars.push(bar("broken", f64::NAN, Some((f64::NAN, 1.0))));
        bars.push(bar("infinite", f64::INFINITY, None));
        let long = bar_chart("MRR", "MRR", &bars);
        assert_well_formed(&long);
        assert_eq!(height(&long) - height(&short), 2.0 * BAR_ROW);
        assert_eq!(count(&long, r#"<rect class="bar""#), 3);
        assert_eq!(count(&long, r#"class="no-value""#), 2);
    }

    #[test]
    fn bar_axis_goes_past_one_to_a_round_number() {
        let svg = bar_chart(
            "Time",
            "s",
            &[bar("slow", 37.0, None), bar("fast", 3.0, None)],
        );
        assert_eq!(
            texts_of_class(&svg, "x-tick"),
            ["0", "10", "20", "30", "40"]
        );
    }

    #[test]
    fn intervals_are_clipped_to_the_axis() {
        let svg = bar_chart("MRR", "MRR", &[bar("wide", 0.5, Some((1.4, -0.2)))]);
        let frame = Frame::beside_labels(["wide"].into_iter(), TITLE_BAND, BAR_ROW);
        let path = svg
            .split("class=\"whisker\" d=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(path, format!("M{:.1} 45.0H{:.1}", frame.left, frame.right));
    }

    #[test]
    fn all_zero_values_still_draw_an_axis() {
        let svg = bar_chart(
            "MRR",
            "MRR",
            &[bar("a", 0.0, Some((0.0, 0.0))), bar("b", 0.0, None)],
        );
        assert_well_formed(&svg);
        assert_eq!(count(&svg, r#"<rect class="bar""#), 2);
        assert_eq!(texts_of_class(&svg, "x-tick").len(), 6);
    }

    #[test]
    fn long_labels_are_shortened_with_the_full_text_kept() {
        let long = "clip-vit-large-patch14+blip-itm-large-coco_concat (full-dataset-run)";
        let svg = bar_chart("MRR", "MRR", &[bar(long, 0.5, None)]);
        let short = shortened(long, MAX_LABEL_CHARS).unwrap();
        assert_eq!(short.chars().count(), MAX_LABEL_CHARS);
        assert!(
            short.starts_with("clip-vit") && short.ends_with("run)"),
            "{short}"
        );
        assert!(svg.contains(&format!("<title>{long}</title>")));
        assert!(svg.contains(&format!(">{short}</text>")));
    }

    #[test]
    fn log_scale_ticks_cover_the_decades_of_the_points() {
        let points = [point("a", 30.0, 0.5, "g"), point("b", 40_000.0, 0.6, "g")];
        let svg = scatter("t", "items/s", "MRR", &points, true);
        assert_eq!(
            texts_of_class(&svg, "x-tick"),
            ["10", "100", "1k", "10k", "100k"]
        );
        assert_eq!(
            texts_of_class(&svg, "y-tick"),
            ["0.45", "0.50", "0.55", "0.60", "0.65"]
        );
        let labels: Vec<String> = [-2, 0, 3, 6, 7, 9, 16].map(decade_label).into();
        assert_eq!(labels, ["0.01", "1", "1k", "1M", "10M", "1G", "1e16"]);
    }

    #[test]
    fn scatter_colours_groups_and_lists_them_in_the_legend() {
        let points = [
            point("a", 1.0, 0.1, "x"),
            point("b", 2.0, 0.2, "y"),
            point("c", 3.0, 0.3, "x"),
        ];
        let svg = scatter("t", "items/s", "MRR", &points, false);
        assert_eq!(count(&svg, r#"<g class="legend-entry">"#), 2);
        assert_eq!(count(&svg, r#"<circle class="point""#), 3);
        assert!(svg.find(">x</text>").unwrap() < svg.find(">y</text>").unwrap());
        assert_eq!(count(&svg, PALETTE[0]), 1 + 2);
        assert!(!svg.contains("not plotted"));
    }

    #[test]
    fn unplaceable_points_are_listed_in_a_footnote() {
        let points = [
            point("fast", 100.0, 0.5, "g"),
            point("untimed", 0.0, 0.4, "g"),
            point("broken", f64::NAN, 0.3, "g"),
            point("unscored", 10.0, f64::NAN, "g"),
        ];
        let svg = scatter("t", "items/s (log scale)", "MRR@10", &points, true);
        assert_well_formed(&svg);
        assert_eq!(count(&svg, r#"<circle class="point""#), 1);
        assert_eq!(
            texts_of_class(&svg, "footnote"),
            ["not plotted: untimed, broken (no items/s value); unscored (no MRR@10 value)"]
        );
        let linear = scatter("t", "items/s", "MRR@10", &points, false);
        assert_eq!(
            texts_of_class(&linear, "footnote"),
            ["not plotted: broken (no items/s value); unscored (no MRR@10 value)"]
        );
    }

    #[test]
    fn a_single_point_gets_a_usable_axis() {
        for (x, y, log_x) in [(500.0, 0.5, true), (0.0, 0.0, false), (7.0, -3.0, false)] {
            let svg = scatter("t", "x", "y", &[point("only", x, y, "g")], log_x);
            assert_well_formed(&svg);
            assert!(texts_of_class(&svg, "x-tick").len() >= 2, "{svg}");
            assert!(texts_of_class(&svg, "y-tick").len() >= 2, "{svg}");
            assert!(!svg.contains("NaN") && !svg.contains("inf"));
        }
    }

    #[test]
    fn point_labels_stay_inside_the_figure() {
        let points = [
            point("right edge label", 1000.0, 0.5, "g"),
            point("b", 1.0, 0.5, "g"),
        ];
        let svg = scatter("t", "x", "y", &points, true);
        assert!(
            svg.contains(r#"text-anchor="end">right edge label</text>"#),
            "{svg}"
        );
    }

    #[test]
    fn grouped_bars_draw_a_bar_per_value_and_a_legend_entry_per_series() {
        let (groups, series) = label_sets();
        let svg = grouped_bars("t", "MRR", &groups, &series);
        assert_eq!(count(&svg, r#"<rect class="bar""#), 5);
        assert_eq!(count(&svg, r#"class="no-value""#), 1);
        assert_eq!(count(&svg, r#"<g class="legend-entry">"#), 2);
        let short = [Series {
            name: "short".into(),
            values: vec![Some(0.5)],
        }];
        assert_eq!(
            count(
                &grouped_bars("t", "MRR", &groups, &short),
                r#"class="no-value""#
            ),
            2
        );
    }

    #[test]
    fn empty_input_says_no_data() {
        let (groups, series) = label_sets();
        let charts = [
            bar_chart("t", "MRR", &[]),
            bar_chart("t", "MRR", &[bar("nan", f64::NAN, None)]),
            scatter("t", "x", "y", &[], true),
            grouped_bars("t", "MRR", &[], &series),
            grouped_bars("t", "MRR", &groups, &[]),
        ];
        for svg in charts {
            assert_well_formed(&svg);
            assert!(svg.contains(">no data</text>"), "{svg}");
            assert!(!svg.contains("class=\"bar\"") && !svg.contains("class=\"point\""));
        }
        let untimed = scatter("t", "items/s", "y", &[point("a", 0.0, 0.5, "g")], true);
        assert!(
            untimed.contains(">no data</text>")
                && untimed.contains("not plotted: a (no items/s value)")
        );
    }

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        let steps: Vec<(u8, i32)> = [1.0, 0.35, 37.0, 0.0005, 2000.0]
            .map(|span| Step::dividing(span, 5.0))
            .map(|s| (s.mantissa, s.exponent))
            .into();
        assert_eq!(steps, [(2, -1), (1, -1), (1, 1), (1, -4), (5, 2)]);
    }

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(escape("a\u{0}b\nc"), "a b c");
    }
}

//! The digest's chart as a PNG: bars drawn with plotters on an in-memory bitmap, labels drawn
//! with an embedded font (DejaVu Sans), so rendering needs no system font or fontconfig.
//!
//! Invariant: the same counts and labels always give the same bytes (no clock, no system
//! state), so a digest is reproducible.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// DejaVu Sans (Bitstream Vera licence: free to embed and redistribute).
static FONT: &[u8] = include_bytes!("DejaVuSans.ttf");

/// Drawn at twice the displayed size, for sharp text on high-density screens.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 560;

const LEFT: i32 = 90;
const RIGHT: i32 = 30;
const TOP: i32 = 40;
const BOTTOM: i32 = 90;

const BAR: RGBColor = RGBColor(79, 70, 229);
const BAR_BAD: RGBColor = RGBColor(179, 38, 30);
const GRID: RGBColor = RGBColor(229, 231, 235);
const AXIS: RGBColor = RGBColor(107, 114, 128);
const INK: [u8; 3] = [31, 41, 55];

/// A bar chart: one bar per label; bars listed in `alarming` are drawn in red.
pub fn bars_png(labels: &[String], counts: &[i64], alarming: &[usize]) -> Result<Vec<u8>> {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let mut buf = vec![255u8; w * h * 3];
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let step = nice_step(max);
    let top = (max + step - 1) / step * step;
    let n = counts.len().max(1);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("chart: {e}"))?;
        let area = root.margin(TOP, BOTTOM, LEFT, RIGHT);
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(0f64..n as f64, 0f64..top as f64)
            .map_err(|e| anyhow!("chart: {e}"))?;
        let mut y = 0;
        while y <= top {
            let style = if y == 0 { AXIS } else { GRID };
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, y as f64), (n as f64, y as f64)],
                    style.stroke_width(2),
                )))
                .map_err(|e| anyhow!("chart: {e}"))?;
            y += step;
        }
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let color = if alarming.contains(&i) { BAR_BAD } else { BAR };
                Rectangle::new(
                    [(i as f64 + 0.18, 0.0), (i as f64 + 0.82, c as f64)],
                    color.filled(),
                )
            }))
            .map_err(|e| anyhow!("chart: {e}"))?;
        root.present().map_err(|e| anyhow!("chart: {e}"))?;
    }
    let font = FontRef::try_from_slice(FONT).map_err(|e| anyhow!("embedded font: {e}"))?;
    let plot_w = (w as i32 - LEFT - RIGHT) as f32;
    let plot_h = (h as i32 - TOP - BOTTOM) as f32;
    let to_y = |v: i64| TOP as f32 + plot_h * (1.0 - v as f32 / top as f32);
    let mut canvas = Canvas {
        buf: &mut buf,
        w,
        h,
        font: &font,
    };
    let mut y = 0;
    while y <= top {
        canvas.text(
            &y.to_string(),
            24.0,
            LEFT as f32 - 14.0,
            to_y(y) + 8.0,
            Anchor::Right,
        );
        y += step;
    }
    let slot = plot_w / n as f32;
    for (i, (label, &c)) in labels.iter().zip(counts).enumerate() {
        let cx = LEFT as f32 + slot * (i as f32 + 0.5);
        canvas.text(
            label,
            24.0,
            cx,
            (h as i32 - BOTTOM) as f32 + 40.0,
            Anchor::Center,
        );
        canvas.text(&c.to_string(), 26.0, cx, to_y(c) - 10.0, Anchor::Center);
    }
    encode_png(&buf, WIDTH, HEIGHT)
}

/// 1, 2 or 5 × 10^k, so that the axis has at most about five lines.
fn nice_step(max: i64) -> i64 {
    let mut base = 1;
    loop {
        for m in [1, 2, 5] {
            if max / (base * m) <= 5 {
                return base * m;
            }
        }
        base *= 10;
    }
}

#[derive(Clone, Copy)]
enum Anchor {
    Center,
    Right,
}

struct Canvas<'a> {
    buf: &'a mut [u8],
    w: usize,
    h: usize,
    font: &'a FontRef<'a>,
}

impl Canvas<'_> {
    /// Draws `text` with its baseline at `y`, anchored at `x`.
    fn text(&mut self, text: &str, size: f32, x: f32, y: f32, anchor: Anchor) {
        let scaled = self.font.as_scaled(PxScale::from(size));
        let mut width = 0.0;
        let mut prev = None;
        for ch in text.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = prev {
                width += scaled.kern(p, id);
            }
            width += scaled.h_advance(id);
            prev = Some(id);
        }
        let mut pen = match anchor {
            Anchor::Center => x - width / 2.0,
            Anchor::Right => x - width,
        };
        let mut prev = None;
        for ch in text.chars() {
            let id = scaled.glyph_id(ch);
            if let Some(p) = prev {
                pen += scaled.kern(p, id);
            }
            let glyph = id.with_scale_and_position(size, ab_glyph::point(pen, y));
            pen += scaled.h_advance(id);
            prev = Some(id);
            let Some(outlined) = self.font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outlined.px_bounds();
            let (w, h) = (self.w, self.h);
            let buf = &mut *self.buf;
            outlined.draw(|gx, gy, coverage| {
                let px = bounds.min.x as i64 + gx as i64;
                let py = bounds.min.y as i64 + gy as i64;
                if px < 0 || py < 0 || px >= w as i64 || py >= h as i64 {
                    return;
                }
                let i = (py as usize * w + px as usize) * 3;
                let a = coverage.clamp(0.0, 1.0);
                for k in 0..3 {
                    let bg = buf[i + k] as f32;
                    buf[i + k] = (bg + (INK[k] as f32 - bg) * a).round() as u8;
                }
            });
        }
    }
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_a_png_of_the_announced_size_with_ink_on_it() {
        let labels: Vec<String> = ["< 1 h", "1–4 h", "sans réponse"].map(String::from).into();
        let png = bars_png(&labels, &[3, 7, 2], &[2]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(&png[..]);
        let mut reader = decoder.read_info().unwrap();
        let mut img = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut img).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        let px = |x: usize, y: usize| {
            let i = (y * WIDTH as usize + x) * 3;
            [img[i], img[i + 1], img[i + 2]]
        };
        // The middle of the second bar (7 of 10) is bar-coloured; the third bar is red.
        let slot = (WIDTH as i32 - LEFT - RIGHT) as usize / 3;
        let bottom = (HEIGHT as i32 - BOTTOM) as usize - 10;
        assert_eq!(px(LEFT as usize + slot + slot / 2, bottom), [79, 70, 229]);
        assert_eq!(
            px(LEFT as usize + 2 * slot + slot / 2, bottom),
            [179, 38, 30]
        );
        // Labels were drawn: dark pixels below the plot.
        let dark = (HEIGHT as usize - BOTTOM as usize..HEIGHT as usize)
            .flat_map(|y| (0..WIDTH as usize).map(move |x| (x, y)))
            .filter(|&(x, y)| px(x, y)[0] < 100)
            .count();
        assert!(dark > 200, "{dark} dark pixels");
    }

    #[test]
    fn axis_steps_are_round_numbers() {
        assert_eq!(nice_step(1), 1);
        assert_eq!(nice_step(7), 2);
        assert_eq!(nice_step(23), 5);
        assert_eq!(nice_step(480), 100);
    }
}

//! Small charts drawn on the server as inline SVG (no script, nothing
//! fetched: the page's policy still allows none): throughput per minute
//! (bars of succeeded attempts, failed ones stacked on top) and the
//! failure rate per minute. This file computes the geometry; the template
//! `chart.html` writes the SVG, escaping the titles.

use crate::series::{Counts, MINUTE_MS};

/// One bar's width and the step from one bar to the next, px.
const BAR: u32 = 3;
const STEP: u32 = 4;
/// The drawing's height, px.
const HEIGHT: u32 = 36;

/// One minute of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The minute (minutes since the Unix epoch).
    pub minute: u64,
    /// Left edge, px.
    pub x: u32,
    /// Its bar's width, px.
    pub w: u32,
    /// The lower rectangle (succeeded, or the failure rate): top and
    /// height, px, as SVG numbers.
    pub low_y: String,
    /// See `low_y`.
    pub low_h: String,
    /// The upper rectangle (failed, stacked on succeeded): top and height.
    pub high_y: String,
    /// See `high_y`.
    pub high_h: String,
    /// Succeeded attempts that minute.
    pub succeeded: u64,
    /// Failed attempts that minute (retried or dead).
    pub failed: u64,
    /// The failure rate in per mille (`0` when nothing finished).
    pub permille: u64,
    /// What a pointer over it reads: the time and the counts.
    pub title: String,
}

/// A chart ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// `throughput` or `failures`: the SVG's class.
    pub kind: &'static str,
    /// Width and height, px.
    pub width: u32,
    /// See `width`.
    pub height: u32,
    /// The minutes that have something to draw.
    pub bars: Vec<Bar>,
    /// What the chart says in one line (`42 finished, 3 failed`).
    pub label: String,
}

fn px(v: f64) -> String {
    format!("{v:.1}")
}

/// A bar `n` of `max` tall, at least a pixel when `n` is not zero.
fn height(n: f64, max: f64) -> f64 {
    if n <= 0.0 || max <= 0.0 {
        0.0
    } else {
        (n / max * f64::from(HEIGHT)).max(1.0)
    }
}

fn hhmm(minute: u64) -> String {
    let t = crate::text::format_ms(minute * MINUTE_MS);
    // RFC 3339: the hour and minute sit at 11..16.
    t.get(11..16).map_or(t.clone(), str::to_string)
}

/// The chart frame of `minutes` (oldest first, one per minute).
fn frame(kind: &'static str, minutes: &[(u64, Counts)], label: String) -> Chart {
    let n = u32::try_from(minutes.len()).unwrap_or(u32::MAX);
    Chart {
        kind,
        width: n.saturating_mul(STEP).max(STEP),
        height: HEIGHT,
        bars: Vec::new(),
        label,
    }
}

/// Finished attempts per minute: succeeded below, failed stacked above,
/// scaled to the busiest minute.
#[must_use]
pub fn throughput(minutes: &[(u64, Counts)]) -> Chart {
    let total = minutes.iter().fold(Counts::default(), |mut t, (_, c)| {
        t.merge(c);
        t
    });
    let label = format!(
        "{} finished, {} failed in the last {} min",
        total.finished(),
        total.failed(),
        minutes.len()
    );
    let mut chart = frame("throughput", minutes, label);
    let max = minutes.iter().map(|(_, c)| c.finished()).max().unwrap_or(0) as f64;
    let h = f64::from(HEIGHT);
    for (i, (minute, c)) in minutes.iter().enumerate() {
        if c.finished() == 0 {
            continue;
        }
        // A failure keeps its pixel even beside a thousand successes.
        let high = height(c.failed() as f64, max);
        let low = height(c.succeeded as f64, max).min(h - high);
        chart.bars.push(Bar {
            minute: *minute,
            x: u32::try_from(i).unwrap_or(u32::MAX).saturating_mul(STEP),
            w: BAR,
            low_y: px(h - low),
            low_h: px(low),
            high_y: px(h - low - high),
            high_h: px(high),
            succeeded: c.succeeded,
            failed: c.failed(),
            permille: permille(c),
            title: format!(
                "{}: {} succeeded, {} failed",
                hhmm(*minute),
                c.succeeded,
                c.failed()
            ),
        });
    }
    chart
}

fn permille(c: &Counts) -> u64 {
    c.failure_rate().map_or(0, |r| (r * 1000.0).round() as u64)
}

/// The share of finished attempts that failed, per minute (full height:
/// every one failed); minutes where nothing finished are left blank.
#[must_use]
pub fn failures(minutes: &[(u64, Counts)]) -> Chart {
    let total = minutes.iter().fold(Counts::default(), |mut t, (_, c)| {
        t.merge(c);
        t
    });
    let label = match total.failure_rate() {
        Some(r) => format!("{:.1}% failed in the last {} min", r * 100.0, minutes.len()),
        None => format!("nothing finished in the last {} min", minutes.len()),
    };
    let mut chart = frame("failures", minutes, label);
    let h = f64::from(HEIGHT);
    for (i, (minute, c)) in minutes.iter().enumerate() {
        let Some(rate) = c.failure_rate() else {
            continue;
        };
        let low = height(rate, 1.0);
        chart.bars.push(Bar {
            minute: *minute,
            x: u32::try_from(i).unwrap_or(u32::MAX).saturating_mul(STEP),
            w: BAR,
            low_y: px(h - low),
            low_h: px(low),
            high_y: px(h - low),
            high_h: px(0.0),
            succeeded: c.succeeded,
            failed: c.failed(),
            permille: permille(c),
            title: format!(
                "{}: {:.1}% failed ({} of {})",
                hhmm(*minute),
                rate * 100.0,
                c.failed(),
                c.finished()
            ),
        });
    }
    chart
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(succeeded: u64, retried: u64, dead: u64) -> Counts {
        Counts {
            succeeded,
            retried,
            dead,
            ..Counts::default()
        }
    }

    #[test]
    fn throughput_draws_only_busy_minutes_scaled_to_the_busiest() {
        let minutes = [
            (100, counts(4, 0, 0)),
            (101, Counts::default()),
            (102, counts(1, 0, 1)),
        ];
        let c = throughput(&minutes);
        assert_eq!((c.width, c.height), (12, 36));
        assert_eq!(c.bars.len(), 2, "the empty minute draws nothing");
        let (a, b) = (&c.bars[0], &c.bars[1]);
        assert_eq!((a.minute, a.x, a.succeeded, a.failed), (100, 0, 4, 0));
        assert_eq!((a.low_y.as_str(), a.low_h.as_str()), ("0.0", "36.0"));
        assert_eq!(a.high_h, "0.0");
        assert_eq!((b.minute, b.x, b.succeeded, b.failed), (102, 8, 1, 1));
        assert_eq!((b.low_h.as_str(), b.high_h.as_str()), ("9.0", "9.0"));
        assert_eq!(b.high_y, "18.0", "stacked on the succeeded part");
        assert_eq!(b.permille, 500);
        assert_eq!(c.label, "6 finished, 1 failed in the last 3 min");
        assert!(a.title.ends_with(": 4 succeeded, 0 failed"), "{}", a.title);
    }

    #[test]
    fn a_lone_failure_among_many_still_shows_a_pixel() {
        let c = throughput(&[(1, counts(1000, 1, 0))]);
        assert_eq!(c.bars[0].high_h, "1.0");
        let f = failures(&[(1, counts(1000, 1, 0))]);
        assert_eq!(f.bars[0].low_h, "1.0");
        assert_eq!(f.bars[0].permille, 1);
    }

    #[test]
    fn the_failure_rate_is_full_height_when_every_attempt_failed() {
        let f = failures(&[
            (7, counts(0, 2, 1)),
            (8, Counts::default()),
            (9, counts(3, 1, 0)),
        ]);
        assert_eq!(f.bars.len(), 2);
        assert_eq!(
            (f.bars[0].low_y.as_str(), f.bars[0].low_h.as_str()),
            ("0.0", "36.0")
        );
        assert_eq!(f.bars[1].permille, 250);
        assert_eq!(f.bars[1].x, 8);
        assert_eq!(f.label, "57.1% failed in the last 3 min");
        assert_eq!(
            failures(&[(1, Counts::default())]).label,
            "nothing finished in the last 1 min"
        );
    }
}

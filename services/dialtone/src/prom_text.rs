//! Reads the Prometheus text exposition this process renders on `/metrics` back into typed
//! families, so the OTLP metrics exporter sends exactly the values a scrape would see. Pure:
//! text in, families out; lines it cannot read are skipped (the renderers are ours, and a
//! scrape of the same text would skip them too).

use std::collections::BTreeMap;

/// A family's type, from its `# TYPE` line (untyped samples count as gauges).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Labels of one series, in the order written.
pub type Labels = Vec<(String, String)>;

/// One series of a histogram family.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSeries {
    pub labels: Labels,
    /// `(upper bound, cumulative count)` in ascending bound order, without `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

/// The samples of a family.
#[derive(Clone, Debug, PartialEq)]
pub enum Samples {
    /// Counters and gauges: one value per label set.
    Values(Vec<(Labels, f64)>),
    Histograms(Vec<HistogramSeries>),
}

/// One metric family.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Samples,
}

/// Parses a whole exposition. Families come out in the order their first line appears.
pub fn parse(text: &str) -> Vec<Family> {
    let mut order: Vec<String> = Vec::new();
    let mut meta: BTreeMap<String, (String, Kind)> = BTreeMap::new();
    let mut values: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
    let mut hist: BTreeMap<String, Vec<HistogramSeries>> = BTreeMap::new();
    let note = |order: &mut Vec<String>, name: &str| {
        if !order.iter().any(|n| n == name) {
            order.push(name.to_owned());
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            note(&mut order, name);
            meta.entry(name.to_owned())
                .or_insert_with(|| (String::new(), Kind::Gauge))
                .0 = help.to_owned();
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = match kind.trim() {
                "counter" => Kind::Counter,
                "histogram" => Kind::Histogram,
                _ => Kind::Gauge,
            };
            note(&mut order, name);
            meta.entry(name.to_owned())
                .or_insert_with(|| (String::new(), kind))
                .1 = kind;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        // A histogram's samples carry a suffix on the family's name.
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            let base = name.strip_suffix(suffix)?;
            (meta.get(base).map(|m| m.1) == Some(Kind::Histogram)).then_some((base, *suffix))
        });
        match family {
            Some((base, suffix)) => {
                let mut labels = labels;
                let le = labels
                    .iter()
                    .position(|(k, _)| k == "le")
                    .map(|i| labels.remove(i).1);
                let series = hist.entry(base.to_owned()).or_default();
                let i = match series.iter().position(|s| s.labels == labels) {
                    Some(i) => i,
                    None => {
                        series.push(HistogramSeries {
                            labels,
                            buckets: Vec::new(),
                            count: 0,
                            sum: 0.0,
                        });
                        series.len() - 1
                    }
                };
                let s = &mut series[i];
                match (suffix, le) {
                    ("_bucket", Some(le)) if le != "+Inf" => {
                        if let Ok(bound) = le.parse::<f64>() {
                            s.buckets.push((bound, value as u64));
                        }
                    }
                    ("_sum", _) => s.sum = value,
                    ("_count", _) => s.count = value as u64,
                    _ => {}
                }
            }
            None => {
                note(&mut order, name);
                values
                    .entry(name.to_owned())
                    .or_default()
                    .push((labels, value));
            }
        }
    }
    order
        .into_iter()
        .filter_map(|name| {
            let (help, kind) = meta.remove(&name).unwrap_or((String::new(), Kind::Gauge));
            let samples = match kind {
                Kind::Histogram => {
                    let mut series = hist.remove(&name)?;
                    for s in &mut series {
                        s.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                    }
                    Samples::Histograms(series)
                }
                _ => Samples::Values(values.remove(&name)?),
            };
            Some(Family {
                name,
                help,
                kind,
                samples,
            })
        })
        .collect()
}

/// `name{labels} value` (an optional timestamp after the value is ignored).
fn sample(line: &str) -> Option<(&str, Labels, f64)> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(r) => label_list(r)?,
        None => (Vec::new(), rest),
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    (!name.is_empty()).then_some((name, labels, value))
}

/// The labels after `{`, up to and including `}`; returns them and what follows.
fn label_list(mut s: &str) -> Option<(Labels, &str)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((out, rest));
        }
        let (key, rest) = s.split_once('=')?;
        let mut rest = rest.strip_prefix('"')?.chars();
        let mut value = String::new();
        loop {
            match rest.next()? {
                '"' => break,
                '\\' => match rest.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        out.push((key.trim().to_owned(), value));
        s = rest.as_str();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn samples_are_read_with_labels_escapes_and_special_values() {
        for (line, want) in [
            ("up 1", Some(("up", l(&[]), 1.0))),
            ("x{a=\"b\"} 2.5", Some(("x", l(&[("a", "b")]), 2.5))),
            (
                "x{a=\"q\\\"u\\\\o\\nte\",b=\"\"} 3 1700000000",
                Some(("x", l(&[("a", "q\"u\\o\nte"), ("b", "")]), 3.0)),
            ),
            ("x{a=\"b\",} -1", Some(("x", l(&[("a", "b")]), -1.0))),
            ("x +Inf", Some(("x", l(&[]), f64::INFINITY))),
            ("x{a=\"b\"", None),
            ("x{a=b} 1", None),
            ("x nope", None),
            ("lonely", None),
        ] {
            assert_eq!(sample(line), want, "{line}");
        }
    }

    #[test]
    fn families_keep_their_type_help_and_order() {
        let text = "# HELP b_total Things.\n# TYPE b_total counter\nb_total{k=\"1\"} 4\nb_total{k=\"2\"} 5\n\
                    # HELP a_up Whether.\n# TYPE a_up gauge\na_up 1\n\
                    untyped_thing 7\n\
                    # TYPE empty counter\n";
        let f = parse(text);
        let names: Vec<_> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            ["b_total", "a_up", "untyped_thing"],
            "a family without samples is dropped"
        );
        assert_eq!(f[0].kind, Kind::Counter);
        assert_eq!(f[0].help, "Things.");
        assert_eq!(
            f[0].samples,
            Samples::Values(vec![(l(&[("k", "1")]), 4.0), (l(&[("k", "2")]), 5.0)])
        );
        assert_eq!(f[2].kind, Kind::Gauge);
    }

    #[test]
    fn histograms_group_buckets_sum_and_count_per_label_set() {
        let mut text = String::from("# HELP d_seconds Latency.\n# TYPE d_seconds histogram\n");
        for op in ["get", "txn"] {
            let h = dialtone_metrics::Histogram::new(&[0.01, 0.1]);
            h.observe(0.005);
            h.observe(0.05);
            if op == "txn" {
                h.observe(9.0);
            }
            h.render("d_seconds", &format!("op=\"{op}\""), &mut text);
        }
        let f = parse(&text);
        assert_eq!(f.len(), 1);
        let Samples::Histograms(series) = &f[0].samples else {
            panic!("not a histogram: {f:?}")
        };
        assert_eq!(series.len(), 2);
        assert_eq!(series[1].labels, l(&[("op", "txn")]));
        assert_eq!(series[1].buckets, vec![(0.01, 1), (0.1, 2)]);
        assert_eq!(series[1].count, 3);
        assert!((series[1].sum - 9.055).abs() < 1e-9);
    }

    #[test]
    fn a_counter_named_like_a_histogram_suffix_stays_a_counter() {
        let f = parse("# TYPE jobs_count counter\njobs_count 3\n");
        assert_eq!(f[0].name, "jobs_count");
        assert_eq!(f[0].samples, Samples::Values(vec![(l(&[]), 3.0)]));
    }
}

//! Exact bytes for every metric type and flavour, checked by hand against the daemons'
//! documented syntax.

use std::time::{Duration, UNIX_EPOCH};

use super::format::{Encoder, InlineLine, Out, INLINE_CAPACITY};
use super::*;

fn encoder(flavour: Flavour, prefix: &str, tags: &[(&str, &str)], sanitize: bool) -> Encoder {
    let tags: Vec<(String, String)> = tags
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Encoder::new(flavour, prefix, &tags, sanitize).expect("valid encoder")
}

#[track_caller]
fn line_with(enc: &Encoder, m: Metric<'_>) -> Result<String, MetricError> {
    let rate = enc.check(&m)?;
    let mut inline = InlineLine::new();
    enc.encode(&mut inline, &m, rate)?;
    let mut heap = Vec::new();
    enc.encode(&mut heap, &m, rate)?;
    if !inline.overflowed() {
        assert_eq!(
            inline.as_bytes(),
            heap.as_slice(),
            "inline and heap formatting agree"
        );
    }
    Ok(String::from_utf8(heap).expect("utf-8"))
}

#[track_caller]
fn line(flavour: Flavour, m: Metric<'_>) -> String {
    line_with(&encoder(flavour, "", &[], false), m).expect("metric accepted")
}

#[track_caller]
fn refused(flavour: Flavour, m: Metric<'_>) -> MetricError {
    line_with(&encoder(flavour, "", &[], false), m).expect_err("metric refused")
}

const ALL: [Flavour; 3] = [Flavour::Etsy, Flavour::DogStatsd, Flavour::Telegraf];

#[test]
fn counters() {
    for f in ALL {
        assert_eq!(line(f, Metric::count("hits", 1)), "hits:1|c");
        assert_eq!(line(f, Metric::count("hits", -42)), "hits:-42|c");
        assert_eq!(
            line(f, Metric::count("hits", i64::MIN)),
            "hits:-9223372036854775808|c"
        );
        assert_eq!(
            line(f, Metric::count("a.b-c_d", 7).sample_rate(0.5)),
            "a.b-c_d:7|c|@0.5"
        );
        assert_eq!(
            line(f, Metric::count("x", 1).sample_rate(0.001)),
            "x:1|c|@0.001"
        );
        // Plain decimal even where ryu would write 1e-5: Etsy reads `^@([\d\.]+)`.
        assert_eq!(
            line(f, Metric::count("x", 1).sample_rate(1e-5)),
            "x:1|c|@0.00001"
        );
        assert_eq!(line(f, Metric::count("x", 1).sample_rate(1.0)), "x:1|c");
    }
}

#[test]
fn gauges() {
    for f in ALL {
        assert_eq!(line(f, Metric::gauge("temp", 21.5)), "temp:21.5|g");
        assert_eq!(line(f, Metric::gauge("temp", 3.0)), "temp:3|g");
        assert_eq!(line(f, Metric::gauge("temp", 0.1)), "temp:0.1|g");
        assert_eq!(line(f, Metric::gauge("big", 1e300)), "big:1e300|g");
        assert_eq!(line(f, Metric::gauge("z", -0.0)), "z:0|g");
    }
    // A negative set: Etsy and Telegraf would read `-5` as a decrement.
    assert_eq!(
        line(Flavour::Etsy, Metric::gauge("q", -5.0)),
        "q:0|g\nq:-5|g"
    );
    assert_eq!(
        line(Flavour::Telegraf, Metric::gauge("q", -5.0)),
        "q:0|g\nq:-5|g"
    );
    assert_eq!(line(Flavour::DogStatsd, Metric::gauge("q", -5.0)), "q:-5|g");
    assert_eq!(
        line_with(
            &encoder(Flavour::Telegraf, "p", &[("h", "a")], false),
            Metric::gauge("q", -1.5)
        )
        .unwrap(),
        "p.q,h=a:0|g\np.q,h=a:-1.5|g"
    );
    assert_eq!(
        line_with(
            &encoder(Flavour::Etsy, "", &[("h", "a")], false),
            Metric::gauge("q", -2.0)
        )
        .unwrap(),
        "q:0|g|#h:a\nq:-2|g|#h:a"
    );
    for f in [Flavour::Etsy, Flavour::Telegraf] {
        assert_eq!(line(f, Metric::gauge_delta("q", 3.0)), "q:+3|g");
        assert_eq!(line(f, Metric::gauge_delta("q", -2.5)), "q:-2.5|g");
        assert_eq!(line(f, Metric::gauge_delta("q", 0.0)), "q:+0|g");
    }
    assert!(matches!(
        refused(Flavour::DogStatsd, Metric::gauge_delta("q", 1.0)),
        MetricError::Unsupported {
            flavour: Flavour::DogStatsd,
            ..
        }
    ));
}

#[test]
fn timers() {
    for f in ALL {
        assert_eq!(
            line(f, Metric::timing("t", Duration::from_millis(12))),
            "t:12|ms"
        );
        assert_eq!(
            line(f, Metric::timing("t", Duration::from_micros(12_345))),
            "t:12.345|ms"
        );
        assert_eq!(
            line(f, Metric::timing("t", Duration::from_micros(1_500))),
            "t:1.5|ms"
        );
        assert_eq!(
            line(f, Metric::timing("t", Duration::from_micros(10))),
            "t:0.01|ms"
        );
        assert_eq!(
            line(f, Metric::timing("t", Duration::from_nanos(999))),
            "t:0|ms"
        );
        assert_eq!(
            line(f, Metric::timing_ms("t", 320.0).sample_rate(0.1)),
            "t:320|ms|@0.1"
        );
        assert_eq!(
            refused(f, Metric::timing_ms("t", -1.0)),
            MetricError::NegativeTimer
        );
    }
}

#[test]
fn histograms_distributions_sets() {
    assert_eq!(
        line(Flavour::DogStatsd, Metric::histogram("h", 2.5)),
        "h:2.5|h"
    );
    assert_eq!(
        line(Flavour::Telegraf, Metric::histogram("h", -1.0)),
        "h:-1|h"
    );
    assert_eq!(
        line(
            Flavour::DogStatsd,
            Metric::histogram("h", 1.0).sample_rate(0.25)
        ),
        "h:1|h|@0.25"
    );
    assert_eq!(
        line(Flavour::DogStatsd, Metric::distribution("d", 0.75)),
        "d:0.75|d"
    );
    for f in [Flavour::Etsy, Flavour::Telegraf] {
        assert!(matches!(
            refused(f, Metric::distribution("d", 1.0)),
            MetricError::Unsupported { .. }
        ));
    }
    assert!(matches!(
        refused(Flavour::Etsy, Metric::histogram("h", 1.0)),
        MetricError::Unsupported { .. }
    ));
    for f in ALL {
        assert_eq!(
            line(f, Metric::set("users", "alice@example.com")),
            "users:alice@example.com|s"
        );
        assert_eq!(
            refused(f, Metric::set("users", "a|b")),
            MetricError::ReservedByte {
                part: Part::SetValue,
                byte: b'|'
            }
        );
        assert_eq!(
            refused(f, Metric::set("users", "")),
            MetricError::Empty(Part::SetValue)
        );
        assert!(matches!(
            refused(f, Metric::gauge("g", 1.0).sample_rate(0.5)),
            MetricError::Unsupported { .. }
        ));
        assert!(matches!(
            refused(f, Metric::set("s", "x").sample_rate(0.5)),
            MetricError::Unsupported { .. }
        ));
    }
}

#[test]
fn tags_per_flavour() {
    let tags = [("route", "/login"), ("code", "200"), ("canary", "")];
    assert_eq!(
        line(Flavour::DogStatsd, Metric::count("req", 1).tags(&tags)),
        "req:1|c|#route:/login,code:200,canary"
    );
    assert_eq!(
        line(Flavour::Etsy, Metric::count("req", 1).tags(&tags)),
        "req:1|c|#route:/login,code:200,canary"
    );
    assert_eq!(
        line(
            Flavour::Telegraf,
            Metric::count("req", 1).tags(&tags[..2]).sample_rate(0.5)
        ),
        "req,route=/login,code=200:1|c|@0.5"
    );
    assert!(matches!(
        refused(Flavour::Telegraf, Metric::count("req", 1).tags(&tags)),
        MetricError::Unsupported { .. }
    ));
    // Default tags first, then the metric's.
    let dog = encoder(
        Flavour::DogStatsd,
        "app.",
        &[("env", "prod"), ("az", "")],
        false,
    );
    assert_eq!(
        line_with(&dog, Metric::count("req", 2).tags(&[("k", "v")])).unwrap(),
        "app.req:2|c|#env:prod,az,k:v"
    );
    assert_eq!(
        line_with(&dog, Metric::count("req", 2)).unwrap(),
        "app.req:2|c|#env:prod,az"
    );
    let tel = encoder(Flavour::Telegraf, "app", &[("env", "prod")], false);
    assert_eq!(
        line_with(&tel, Metric::timing_ms("lat", 1.25).tags(&[("k", "v")])).unwrap(),
        "app.lat,env=prod,k=v:1.25|ms"
    );
}

#[test]
fn dogstatsd_timestamp_and_container() {
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let m = Metric::count("c", 1)
        .sample_rate(0.5)
        .tags(&[("k", "v")])
        .timestamp(at)
        .container_id("abc123");
    assert_eq!(
        line(Flavour::DogStatsd, m),
        "c:1|c|@0.5|#k:v|T1700000000|c:abc123"
    );
    assert_eq!(
        line(Flavour::DogStatsd, Metric::gauge("g", 1.0).timestamp(at)),
        "g:1|g|T1700000000"
    );
    for f in [Flavour::Etsy, Flavour::Telegraf] {
        assert!(matches!(
            refused(f, Metric::count("c", 1).timestamp(at)),
            MetricError::Unsupported { .. }
        ));
        assert!(matches!(
            refused(f, Metric::count("c", 1).container_id("x")),
            MetricError::Unsupported { .. }
        ));
    }
}

#[test]
fn events_and_service_checks() {
    let dog = encoder(Flavour::DogStatsd, "", &[("env", "prod")], false);
    let mut buf = Vec::new();
    let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let e = Event::new("Deploy", "line one\nline two")
        .timestamp(at)
        .hostname("web-1")
        .aggregation_key("deploys")
        .priority(Priority::Low)
        .source_type("ci")
        .alert_type(AlertType::Success)
        .tags(&[("svc", "api")]);
    dog.encode_event(&mut buf, &e).unwrap();
    // 17 text bytes: the newline is sent as the two bytes `\n`.
    assert_eq!(
        String::from_utf8(buf.clone()).unwrap(),
        "_e{6,18}:Deploy|line one\\nline two|d:1700000000|h:web-1|k:deploys|p:low|s:ci|t:success|#env:prod,svc:api"
    );
    buf.clear();
    dog.encode_event(&mut buf, &Event::new("héllo", ""))
        .unwrap();
    assert_eq!(
        String::from_utf8(buf.clone()).unwrap(),
        "_e{6,0}:héllo||#env:prod"
    );
    buf.clear();
    let c = ServiceCheck::new("db.up", Status::Critical)
        .timestamp(at)
        .hostname("db-1")
        .message("down\nsince 5 min")
        .tags(&[("shard", "3")]);
    dog.encode_service_check(&mut buf, &c).unwrap();
    assert_eq!(
        String::from_utf8(buf.clone()).unwrap(),
        "_sc|db.up|2|d:1700000000|h:db-1|#env:prod,shard:3|m:down\\nsince 5 min"
    );
    buf.clear();
    assert!(dog
        .encode_service_check(&mut buf, &ServiceCheck::new("x", Status::Ok).message("a|b"))
        .is_err());
    let etsy = encoder(Flavour::Etsy, "", &[], false);
    assert!(matches!(
        etsy.encode_event(&mut buf, &Event::new("t", "x")),
        Err(MetricError::Unsupported { .. })
    ));
    assert!(matches!(
        etsy.encode_service_check(&mut buf, &ServiceCheck::new("x", Status::Ok)),
        Err(MetricError::Unsupported { .. })
    ));
}

#[test]
fn reserved_bytes_refused_or_sanitised() {
    for (name, byte) in [
        ("a:b", b':'),
        ("a|b", b'|'),
        ("a@b", b'@'),
        ("a#b", b'#'),
        ("a,b", b','),
        ("a\nb", b'\n'),
    ] {
        for f in ALL {
            assert_eq!(
                refused(f, Metric::count(name, 1)),
                MetricError::ReservedByte {
                    part: Part::Name,
                    byte
                },
                "{name:?}"
            );
            assert_eq!(
                line_with(&encoder(f, "", &[], true), Metric::count(name, 1)).unwrap(),
                "a_b:1|c"
            );
        }
        let tags = [("k", name)];
        assert_eq!(
            refused(Flavour::DogStatsd, Metric::count("n", 1).tags(&tags)),
            MetricError::ReservedByte {
                part: Part::TagValue,
                byte
            }
        );
        let tags = [(name, "v")];
        assert_eq!(
            refused(Flavour::DogStatsd, Metric::count("n", 1).tags(&tags)),
            MetricError::ReservedByte {
                part: Part::TagKey,
                byte
            }
        );
    }
    assert_eq!(
        refused(
            Flavour::Telegraf,
            Metric::count("n", 1).tags(&[("k", "a=b")])
        ),
        MetricError::ReservedByte {
            part: Part::TagValue,
            byte: b'='
        }
    );
    assert_eq!(
        line_with(
            &encoder(Flavour::Telegraf, "", &[], true),
            Metric::count("n", 1).tags(&[("k", "a=b")])
        )
        .unwrap(),
        "n,k=a_b:1|c"
    );
    assert_eq!(
        refused(Flavour::Etsy, Metric::count("", 1)),
        MetricError::Empty(Part::Name)
    );
    assert_eq!(
        refused(Flavour::DogStatsd, Metric::count("n", 1).tags(&[("", "v")])),
        MetricError::Empty(Part::TagKey)
    );
    assert!(Encoder::new(Flavour::Etsy, "bad|prefix", &[], false).is_err());
    assert!(Encoder::new(Flavour::Etsy, "", &[("k".into(), "v,w".into())], false).is_err());
}

#[test]
fn non_finite_values_and_bad_rates_refused() {
    for f in ALL {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(refused(f, Metric::gauge("g", v)), MetricError::NotFinite);
            assert_eq!(
                refused(f, Metric::timing_ms("t", v)),
                MetricError::NotFinite
            );
        }
        for r in [0.0, -0.5, 1.5, f64::NAN, 1e-12] {
            assert_eq!(
                refused(f, Metric::count("c", 1).sample_rate(r)),
                MetricError::InvalidSampleRate
            );
        }
    }
}

#[test]
fn long_lines_spill_to_the_heap_with_the_same_bytes() {
    let long = "n".repeat(INLINE_CAPACITY + 10);
    let enc = encoder(Flavour::Etsy, "", &[], false);
    let m = Metric::count(&long, 1);
    let rate = enc.check(&m).unwrap();
    let mut inline = InlineLine::new();
    enc.encode(&mut inline, &m, rate).unwrap();
    assert!(inline.overflowed());
    assert_eq!(line_with(&enc, m).unwrap(), format!("{long}:1|c"));
}

#[test]
fn every_line_we_format_parses_back_and_passes_its_flavour_check() {
    let at = UNIX_EPOCH + Duration::from_secs(5);
    let tags = [("k", "v")];
    for f in ALL {
        let metrics = [
            Metric::count("a", 3).sample_rate(0.3),
            Metric::gauge("a", -2.5),
            Metric::gauge("a", 1e-7),
            Metric::gauge_delta("a", 4.0),
            Metric::timing("a", Duration::from_micros(1234)),
            Metric::histogram("a", 1.0),
            Metric::distribution("a", 1.0),
            Metric::set("a", "x"),
            Metric::count("a", 1).tags(&tags),
            Metric::count("a", 1).timestamp(at).container_id("c"),
        ];
        for m in metrics {
            if let Ok(text) = line_with(&encoder(f, "p", &[], false), m) {
                for l in text.split('\n') {
                    check_line(l.as_bytes(), f).unwrap_or_else(|e| panic!("{f:?} {l:?}: {e}"));
                }
            }
        }
    }
}

#[test]
fn inline_line_holds_exactly_its_capacity() {
    use super::format::Out;
    let mut l = InlineLine::new();
    l.put(&[b'a'; INLINE_CAPACITY - 1]);
    l.put_byte(b'b');
    assert!(!l.overflowed());
    assert_eq!(l.as_bytes().len(), INLINE_CAPACITY);
    assert_eq!(l.as_bytes()[INLINE_CAPACITY - 1], b'b');
    l.put_byte(b'c');
    assert!(l.overflowed());
    assert!(l.as_bytes().is_empty());
    l.put(b"");
    l.put_byte(b'd');
    assert!(l.overflowed(), "once overflowed, stays overflowed");
    let mut m = InlineLine::new();
    m.put(&[b'x'; 200]);
    m.put(&[b'y'; 47]);
    assert!(m.overflowed());
}

#[test]
fn a_queue_slot_is_256_bytes_and_the_client_is_shareable() {
    // The ring slot is the unit plus an 8-byte stamp: keep it at 256 bytes.
    assert_eq!(std::mem::size_of::<super::client::Unit>(), 248);
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Client>();
}

#[test]
fn inline_unit_layout() {
    // `LineInSlot` writes a `Unit::Inline` by hand: the tag first, the line at offset 1.
    let mut line = InlineLine::new();
    line.put(b"abc:1|c");
    let unit = super::client::Unit::Inline(line);
    let raw = &unit as *const super::client::Unit as *const u8;
    // SAFETY: reads the tag, the line's length and its used bytes, all initialised.
    let (tag, len, first) = unsafe { (*raw, *raw.add(1), *raw.add(2)) };
    assert_eq!((tag, len, first), (0, 7, b'a'));
    assert_eq!(unit.bytes(), b"abc:1|c");
}

mod never_malformed {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Printable ASCII plus every reserved byte, newlines and a multi-byte character.
        proptest::collection::vec(
            prop_oneof![
                8 => proptest::char::range('!', '~'),
                1 => Just('\n'),
                1 => Just('\r'),
                1 => Just(' '),
                1 => Just('é'),
            ],
            0..12,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (-1e6f64..1e6),
            Just(0.0),
            Just(-0.0),
            any::<i32>().prop_map(f64::from),
        ]
    }

    proptest! {
        /// Whatever the caller passes, the client either refuses it or produces lines
        /// that parse and pass the flavour's own check: no malformed line on the wire.
        #[test]
        fn refused_or_well_formed(
            flavour in prop_oneof![Just(Flavour::Etsy), Just(Flavour::DogStatsd), Just(Flavour::Telegraf)],
            sanitize in any::<bool>(),
            name in text(),
            key in text(),
            tag_value in text(),
            member in text(),
            v in value(),
            kind in 0u8..8,
            rate in prop_oneof![Just(1.0), 0.0f64..1.5],
        ) {
            let enc = encoder(flavour, "p", &[], sanitize);
            let tags = [(key.as_str(), tag_value.as_str())];
            let m = match kind {
                0 => Metric::count(&name, v as i64),
                1 => Metric::gauge(&name, v),
                2 => Metric::gauge_delta(&name, v),
                3 => Metric::timing_ms(&name, v),
                4 => Metric::histogram(&name, v),
                5 => Metric::distribution(&name, v),
                6 => Metric::set(&name, &member),
                _ => Metric::timing(&name, Duration::from_nanos(v.abs().min(1e18) as u64)),
            }
            .tags(&tags)
            .sample_rate(rate);
            if let Ok(text) = line_with(&enc, m) {
                for l in text.split('\n') {
                    prop_assert!(check_line(l.as_bytes(), flavour).is_ok(), "{:?} {:?}: {:?}", flavour, l, check_line(l.as_bytes(), flavour));
                }
                prop_assert!(!text.contains('\r'));
                prop_assert_eq!(text.matches('\n').count(), usize::from(kind == 1 && v < 0.0 && flavour != Flavour::DogStatsd));
            }
        }
    }
}

#[test]
fn inline_line_puts_runs_of_every_short_length_at_every_offset() {
    // `put` copies runs of up to 16 bytes by hand (overlapping word copies); check each
    // length at several offsets against a plain Vec.
    let source: Vec<u8> = (b'a'..=b'z').chain(b'A'..=b'Z').collect();
    for offset in 0..9 {
        for n in 0..=20 {
            let mut line = InlineLine::new();
            let mut expected = Vec::new();
            line.put(&source[..offset]);
            expected.extend_from_slice(&source[..offset]);
            line.put(&source[offset + 3..offset + 3 + n]);
            expected.extend_from_slice(&source[offset + 3..offset + 3 + n]);
            line.put_byte(b'|');
            expected.push(b'|');
            assert_eq!(line.as_bytes(), &expected[..], "offset {offset} n {n}");
        }
    }
}

//! Adversarial review of issue 21 (the syslog sink writes each event with its send time from the
//! stored bytes; its frame buffer shrinks after a burst and when the worker is idle): the frame
//! buffer in a live feed, frames across a burst, idle and another burst, and messages of
//! hostile event shapes against the ones made of a stamped copy.

use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::net::TcpListener;

use super::*;
use crate::queue::QueuedEvent;
use crate::sinks::Protocol;

fn settings(port: u16, framing: SyslogFraming) -> SyslogSinkSettings {
    SyslogSinkSettings {
        host: "127.0.0.1".into(),
        port,
        transport: SyslogTransport::Tcp,
        framing,
        format: SyslogFormat::Rfc5424,
        facility: 10,
        hostname: Some("h".into()),
        app_name: "auditrelay".into(),
        sd_id: None,
        max_message_size: 64 * 1024,
        oversize: Oversize::DeadLetter,
        timeout: Duration::from_secs(10),
    }
}

/// A page of events of about 1.1 KB each, ids `ids`.
fn page(ids: std::ops::Range<i64>) -> Vec<QueuedEvent> {
    let pad = "p".repeat(1_000);
    ids.map(|id| QueuedEvent {
        id,
        body: format!(r#"{{"class_uid":6003,"severity_id":1,"time":1795292810597,"message":"{pad}","metadata":{{"uid":"u{id}"}}}}"#)
            .into_bytes(),
        collected_ms: 0,
    })
    .collect()
}

/// A receiver that reads one connection to its end and returns what it read.
async fn receiver() -> (u16, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        got
    });
    (port, task)
}

/// The `u<id>` of each LF-framed message, in order.
fn uids(wire: &[u8]) -> Vec<i64> {
    String::from_utf8_lossy(wire)
        .lines()
        .map(|line| {
            let at = line.find("\"uid\":\"u").expect("a uid") + "\"uid\":\"u".len();
            line[at..].split('"').next().unwrap().parse().unwrap()
        })
        .collect()
}

/// A live feed: the vendor's poll brings a page of 300 events (about 350 KB of frames), the
/// worker sends it and, caught up, waits for the next page. Every page has the same size, so
/// this is the steady state of a busy installation, and the frame buffer should be grown once.
/// Found: `run_sink` called `Protocol::idle` each time its read came back empty, `release` cut
/// the buffer to 64 KiB and each page grew it again, by doubling. The worker now calls it only
/// after a quiet spell (`sinks::tests::a_worker_that_keeps_up_lets_go_of_its_buffers_only_after_a_quiet_spell`),
/// so between the pages of a live feed the sink is not told to let go.
#[tokio::test]
async fn a_live_feed_of_same_sized_pages_keeps_its_frame_buffer() {
    let (port, received) = receiver().await;
    let mut sink = SyslogSink::new(&settings(port, SyslogFraming::Lf)).unwrap();
    let mut needed = 0;
    let mut regrown = Vec::new();
    for p in 0..5i64 {
        let events = page(p * 300 + 1..p * 300 + 301);
        let before = sink.wire.capacity();
        if p > 0 && before < needed {
            regrown.push((p, before, needed));
        }
        sink.send(&Stamped::new(&events, 1_795_292_820_000 + p)).await.unwrap();
        needed = sink.wire.len();
        // Caught up until the next poll, sooner than the worker's quiet spell: not idle().
    }
    // A quiet spell: now the buffer goes.
    Protocol::idle(&mut sink);
    assert!(sink.wire.capacity() <= KEEP_BUFFER, "released after the feed went quiet");
    sink.close().await;
    drop(sink);
    let wire = received.await.unwrap();
    assert_eq!(uids(&wire), (1..=1500).collect::<Vec<_>>(), "every frame once, in order");
    assert!(
        regrown.is_empty(),
        "pages of the same size with the worker idle in between: the frame buffer is grown again for \
         every page, (page, capacity before it, bytes it needs): {regrown:?}"
    );
}

/// A burst, idle, a small batch, another burst, a small batch: the buffer shrinks and grows, and
/// every frame arrives once, in order, octet-counted or LF-framed.
#[tokio::test]
async fn frames_survive_a_burst_idle_and_another_burst() {
    for framing in [SyslogFraming::Lf, SyslogFraming::OctetCounting] {
        let (port, received) = receiver().await;
        let mut sink = SyslogSink::new(&settings(port, framing)).unwrap();
        let batches = [1..601, 601..603, 603..1203, 1203..1204, 1204..1804];
        for (i, ids) in batches.iter().enumerate() {
            sink.send(&Stamped::new(&page(ids.clone()), 1_795_292_820_000)).await.unwrap();
            if i % 2 == 0 {
                Protocol::idle(&mut sink);
            }
        }
        sink.close().await;
        drop(sink);
        let wire = received.await.unwrap();
        let wire = match framing {
            SyslogFraming::Lf => wire,
            SyslogFraming::OctetCounting => {
                // `len SP message`, back to back: re-framed with LF for `uids`.
                let (mut out, mut rest) = (Vec::new(), &wire[..]);
                while !rest.is_empty() {
                    let sp = rest.iter().position(|b| *b == b' ').unwrap();
                    let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
                    out.extend_from_slice(&rest[sp + 1..sp + 1 + len]);
                    out.push(b'\n');
                    rest = &rest[sp + 1 + len..];
                }
                out
            }
        };
        assert_eq!(uids(&wire), (1..1804).collect::<Vec<_>>(), "{framing:?}: every frame once, in order");
    }
}

/// Stored bodies that take the stamp but are odd: it already there (metadata and logger), a
/// last logger that is not ours, the event's last key not `metadata`, duplicate keys, escaped
/// quotes and CR/LF in strings, numbers past u64 and i64.
pub(crate) fn hostile_shapes() -> Vec<(&'static str, Vec<u8>)> {
    let logger =
        r#""loggers":[{"name":"auditrelay","product":{"name":"auditrelay","vendor_name":"x"},"logged_time":5}]"#;
    let shapes: Vec<(&'static str, String)> = vec![
        (
            "already carries transmit_time",
            format!(
                r#"{{"class_uid":6003,"time":1,"raw_data_size":2,"metadata":{{"uid":"u","transmit_time":9,{}}}}}"#,
                logger.replace("\"logged_time\":5", "\"transmit_time\":9,\"logged_time\":5")
            ),
        ),
        (
            "last logger not ours",
            format!(
                r#"{{"class_uid":6003,"time":1,"raw_data_size":2,"metadata":{{"uid":"u",{}}}}}"#,
                logger.replace("}]", r#"},{"name":"other","logged_time":6}]"#)
            ),
        ),
        (
            "last key not metadata",
            format!(r#"{{"class_uid":6003,"time":1,"raw_data_size":2,"metadata":{{"uid":"u"}},"zzz":{{{logger}}}}}"#),
        ),
        (
            "duplicate keys in metadata and the logger",
            format!(
                r#"{{"class_uid":6003,"time":1,"raw_data_size":2,"metadata":{{"uid":"u","x":1,"x":2,{}}}}}"#,
                logger.replace("\"logged_time\":5", "\"logged_time\":4,\"logged_time\":5")
            ),
        ),
        (
            "escapes, raw CR/LF and a quote-laden string",
            format!(
                "{{\"class_uid\":6003,\"time\":1,\"message\":\"a\\\"\\\\\\\"loggers\\\":[{{\\\"name\\\":\\\"auditrelay\\\"\\r\\n\",\r\n\"raw_data_size\":2,\"metadata\":{{\"uid\":\"u\\u00e9\",{logger}}}}}"
            ),
        ),
        (
            "numbers past u64 and negative",
            format!(
                r#"{{"class_uid":6003,"time":-1,"big":123456789012345678901234567890,"raw_data_size":2,"metadata":{{"uid":"u",{}}}}}"#,
                logger.replace("\"logged_time\":5", "\"logged_time\":99999999999999999999999")
            ),
        ),
    ];
    let shapes: Vec<(&'static str, Vec<u8>)> = shapes.into_iter().map(|(w, s)| (w, s.into_bytes())).collect();
    for (what, body) in &shapes {
        assert!(crate::ocsf::stampable(body), "{what}: {}", String::from_utf8_lossy(body));
        assert!(crate::ocsf::summary::summarize(body).is_ok(), "{what}");
    }
    shapes
}

/// The hostile shapes as syslog messages: byte for byte the ones made of a stamped copy, at
/// limits around their own sizes with and without the stamp, both rules, both formats.
#[test]
fn hostile_shapes_make_the_messages_a_stamped_copy_made() {
    let events: Vec<QueuedEvent> = hostile_shapes()
        .into_iter()
        .zip(1..)
        .map(|((_, body), id)| QueuedEvent { id, body, collected_ms: 0 })
        .collect();
    let whole = |header: &Header, body: &[u8]| {
        let mut message = Vec::new();
        format::format_event(header, body, usize::MAX, Oversize::DeadLetter, &mut message).ok().map(|_| message.len())
    };
    for format in [SyslogFormat::Rfc5424, SyslogFormat::Rfc3164] {
        for sd_id in [None, Some("ocsf@32473")] {
            let header = Header::new(format, 10, "h", "auditrelay", "4242", sd_id);
            for ms in [0, 7, 1_795_292_820_000, -1, i64::MAX, i64::MIN] {
                let stamped = Stamped::new(&events, ms);
                for event in stamped.iter() {
                    let sent = event.to_vec();
                    let mut limits = vec![usize::MAX, 200];
                    for len in [whole(&header, &sent), whole(&header, event.stored())].into_iter().flatten() {
                        limits.extend([len + 1, len, len - 1]);
                    }
                    for max in limits {
                        for oversize in [Oversize::DeadLetter, Oversize::Truncate] {
                            let (mut new, mut old) = (Vec::new(), Vec::new());
                            let fit = format_sent(&header, &event, max, oversize, &mut new);
                            let before = format_copy(&header, &sent, max, oversize, &mut old);
                            let case = format!("{format:?} {sd_id:?} {ms} event {} max {max} {oversize:?}", event.id());
                            assert_eq!(fit, before, "{case}");
                            assert!(new == old, "{case}");
                        }
                    }
                }
            }
        }
    }
}

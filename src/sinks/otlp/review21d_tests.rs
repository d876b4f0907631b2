//! Adversarial review of issue 21 (the OTLP sink makes each `LogRecord` from the stored event
//! and its send time; the structured body is the stored event's kvlist with the stamp's two
//! entries added): odd event shapes that take the stamp, against the record made of a stamped
//! copy.

use super::*;
use crate::sinks::syslog::review21d_tests::hostile_shapes;

/// Events that take the stamp with the stamp already in them, a last logger not ours, the last
/// key not `metadata`, duplicate keys, escapes and raw CR/LF, numbers past u64: the record (both
/// body modes) is the one made of the stamped copy, field for field and as encoded.
#[tokio::test(start_paused = true)]
async fn hostile_shapes_make_the_record_a_stamped_copy_made() {
    let clock = Clock::starting_at(chrono::DateTime::from_timestamp_millis(1_795_292_812_000).unwrap());
    let events: Vec<QueuedEvent> = hostile_shapes()
        .into_iter()
        .zip(1..)
        .map(|((_, body), id)| QueuedEvent { id, body, collected_ms: 1_795_292_811_000 })
        .collect();
    for mode in [OtlpBody::Structured, OtlpBody::JsonString] {
        for ms in [0, 9, 1_795_292_820_000, -1_000, i64::MAX, i64::MIN] {
            let stamped = Stamped::new(&events, ms);
            for event in stamped.iter() {
                let sent = QueuedEvent { id: event.id(), body: event.to_vec(), collected_ms: event.event.collected_ms };
                let new = stamped_log_record(&event, mode, &clock).unwrap();
                let old = log_record(&sent, mode, &clock).unwrap();
                assert_eq!(new, old, "{mode:?} at {ms}, event {}", event.id());
                assert!(new.encode_to_vec() == old.encode_to_vec(), "{mode:?} at {ms}, event {}", event.id());
            }
        }
    }
}

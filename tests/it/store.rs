//! The store's guarantees, each checked on SQLite and on PostgreSQL with the same body.

use crate::common::{self, store_test, Backend};
use mystery::store::{Checkpoint, Effect, NewMessage, NewVisit, RuleRow, Sending, Store};

fn visit(slot: &str, channel: &str, due: i64) -> NewVisit {
    NewVisit {
        id: uuid::Uuid::new_v4().to_string(),
        slot_key: slot.into(),
        schedule_id: Some("s".into()),
        business_id: "lille".into(),
        group_id: Some("nord".into()),
        scenario_id: "devis".into(),
        channel: channel.into(),
        persona_id: Some("claire".into()),
        due_at: due,
        window_end: None,
        reference: "ABCD-EF".into(),
    }
}

fn message(uid: i64, visit_id: Option<&str>) -> NewMessage {
    NewMessage {
        id: uuid::Uuid::new_v4().to_string(),
        account: "robot".into(),
        mailbox: "INBOX".into(),
        uidvalidity: 7,
        uid,
        seen_at: 5_000,
        internal_date: Some(4_900),
        arrived_at: 5_000,
        message_id: Some(format!("m{uid}@x")),
        from_addr: Some("contact@lille.test".into()),
        subject: Some("Re: devis".into()),
        date_header: None,
        class: "human".into(),
        class_reason: None,
        visit_id: visit_id.map(str::to_owned),
        correlation: visit_id.map(|_| "header".to_owned()),
        parse_error: None,
        raw: b"Subject: x\r\n\r\nbody".to_vec(),
    }
}

fn human(visit_id: &str, at: i64) -> Effect {
    Effect::HumanReply {
        visit_id: visit_id.into(),
        first_reply_at: at,
        reply_date: None,
        time_to_reply_ms: Some(at - 1_000),
        time_to_reply_business_ms: Some(at - 1_000),
        correlation: "header".into(),
        score: 75.0,
        rules: vec![RuleRow {
            rule_id: "prix".into(),
            hit: true,
            weight: 3,
            evidence: Some("120 €".into()),
        }],
    }
}

store_test!(a_slot_key_makes_at_most_one_visit, |store| {
    let v = visit("s|lille|1000", "email", 1_000);
    assert!(store.plan_visit(&v, 0).await.unwrap());
    let again = NewVisit {
        id: "other".into(),
        ..v.clone()
    };
    assert!(!store.plan_visit(&again, 0).await.unwrap());
    assert_eq!(store.count_by_state("planned").await.unwrap(), 1);
});

store_test!(two_claimers_never_get_the_same_visit, |store| {
    for i in 0..20 {
        store
            .plan_visit(&visit(&format!("k{i}"), "email", 1_000), 0)
            .await
            .unwrap();
    }
    let (a, b) = tokio::join!(
        store.claim_due("a", 2_000, 60_000, 15, None),
        store.claim_due("b", 2_000, 60_000, 15, None)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 20);
    assert!(a.iter().all(|x| !b.iter().any(|y| y.id == x.id)));
    assert!(store
        .claim_due("c", 3_000, 60_000, 10, None)
        .await
        .unwrap()
        .is_empty());
});

store_test!(a_visit_not_yet_due_is_not_claimed, |store| {
    store
        .plan_visit(&visit("k", "email", 10_000), 0)
        .await
        .unwrap();
    assert!(store
        .claim_due("a", 9_999, 1_000, 10, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_due("a", 10_000, 1_000, 10, None)
            .await
            .unwrap()
            .len(),
        1
    );
});

store_test!(
    recovery_never_resends_an_enquiry_that_may_have_left,
    |store| {
        let unsent = visit("unsent", "email", 0);
        let sending = visit("sending", "email", 0);
        let call = visit("call", "call", 0);
        for v in [&unsent, &sending, &call] {
            store.plan_visit(v, 0).await.unwrap();
        }
        store.claim_due("dead", 0, 1_000, 10, None).await.unwrap();
        store
            .mark_sending(
                &sending.id,
                "dead",
                &Sending {
                    message_id: "mid@robot.test",
                    subject: "Devis",
                    business_email: "c@l.test",
                    reply_deadline_ms: 100_000,
                },
                0,
            )
            .await
            .unwrap();
        // Before the lease ends, nothing is touched: the owner may still be alive.
        assert_eq!(store.recover_expired(500, "new").await.unwrap(), 0);
        assert_eq!(store.recover_expired(5_000, "new").await.unwrap(), 3);
        assert_eq!(
            store.visit(&unsent.id).await.unwrap().unwrap().state,
            "planned"
        );
        let s = store.visit(&sending.id).await.unwrap().unwrap();
        assert_eq!(
            (s.state.as_str(), s.send_uncertain, s.message_id.as_deref()),
            ("awaiting_reply", true, Some("mid@robot.test"))
        );
        let c = store.visit(&call.id).await.unwrap().unwrap();
        assert_eq!(
            (c.state.as_str(), c.outcome.as_deref()),
            ("failed", Some("failed"))
        );
        // The uncertain one is never claimed again.
        let again = store
            .claim_due("new", 6_000, 1_000, 10, None)
            .await
            .unwrap();
        assert_eq!(
            again.iter().map(|v| v.id.clone()).collect::<Vec<_>>(),
            vec![unsent.id.clone()]
        );
    }
);

store_test!(
    a_message_is_taken_in_once_with_its_effect_and_checkpoint,
    |store| {
        let v = visit("k", "email", 0);
        store.plan_visit(&v, 0).await.unwrap();
        store.claim_due("me", 0, 60_000, 1, None).await.unwrap();
        store
            .mark_sending(
                &v.id,
                "me",
                &Sending {
                    message_id: "mid@robot.test",
                    subject: "Devis",
                    business_email: "c@l.test",
                    reply_deadline_ms: 100_000,
                },
                0,
            )
            .await
            .unwrap();
        store.mark_sent(&v.id, 1_000, 100_000).await.unwrap();
        let m = message(42, Some(&v.id));
        assert!(store
            .record_message(&m, &human(&v.id, 5_000))
            .await
            .unwrap());
        // The same UID again (a restart before the checkpoint was read) changes nothing.
        let again = NewMessage {
            id: "x".into(),
            ..m.clone()
        };
        assert!(!store
            .record_message(&again, &human(&v.id, 9_000))
            .await
            .unwrap());
        let got = store.visit(&v.id).await.unwrap().unwrap();
        assert_eq!(
            (
                got.outcome.as_deref(),
                got.first_reply_at,
                got.time_to_reply_ms
            ),
            (Some("replied"), Some(5_000), Some(4_000))
        );
        assert_eq!(store.rules(&v.id).await.unwrap().len(), 1);
        assert_eq!(
            store.checkpoint("robot", "INBOX").await.unwrap(),
            Some(Checkpoint {
                uidvalidity: 7,
                last_uid: 42
            })
        );
    }
);

/// A visit sent at 1 000 with its Message-ID, awaiting a reply until 100 000.
async fn sent(store: &Store, slot: &str) -> String {
    let v = visit(slot, "email", 0);
    store.plan_visit(&v, 0).await.unwrap();
    store
        .claim_due("me", 0, 60_000, 1, Some(&v.id))
        .await
        .unwrap();
    store
        .mark_sending(
            &v.id,
            "me",
            &Sending {
                message_id: &format!("{slot}@robot.test"),
                subject: "Devis",
                business_email: "c@l.test",
                reply_deadline_ms: 100_000,
            },
            0,
        )
        .await
        .unwrap();
    store.mark_sent(&v.id, 1_000, 100_000).await.unwrap();
    v.id
}

store_test!(
    issue11_a_fetch_batch_is_stored_with_its_checkpoint_all_or_nothing,
    |store| {
        let (a, b) = (sent(&store, "a").await, sent(&store, "b").await);
        let batch = vec![
            (message(10, Some(&a)), human(&a, 5_000)),
            (message(11, None), Effect::None),
            (message(12, Some(&b)), human(&b, 6_000)),
        ];
        let checkpoint = |last_uid| Checkpoint {
            uidvalidity: 7,
            last_uid,
        };
        // The last row cannot be stored (its id is the first one's): nothing of the batch is,
        // and the checkpoint stays where it was.
        let mut broken = batch.clone();
        broken[2].0.id = broken[0].0.id.clone();
        assert!(store
            .record_batch("robot", "INBOX", &broken, checkpoint(14))
            .await
            .is_err());
        assert_eq!(store.checkpoint("robot", "INBOX").await.unwrap(), None);
        assert!(store.unmatched_messages(0).await.unwrap().is_empty());
        for id in [&a, &b] {
            let v = store.visit(id).await.unwrap().unwrap();
            assert_eq!((v.state.as_str(), v.outcome), ("awaiting_reply", None));
            assert!(store.rules(id).await.unwrap().is_empty());
        }

        // The whole batch: every message, every effect with its rules, and the checkpoint
        // past the UIDs stepped over after the last message (13, 14).
        let fresh = store
            .record_batch("robot", "INBOX", &batch, checkpoint(14))
            .await
            .unwrap();
        assert_eq!(fresh, vec![true, true, true]);
        assert_eq!(
            store.checkpoint("robot", "INBOX").await.unwrap(),
            Some(checkpoint(14))
        );
        assert_eq!(store.unmatched_messages(0).await.unwrap().len(), 1);
        for (id, at) in [(&a, 5_000), (&b, 6_000)] {
            let v = store.visit(id).await.unwrap().unwrap();
            assert_eq!(
                (v.outcome.as_deref(), v.first_reply_at, v.time_to_reply_ms),
                (Some("replied"), Some(at), Some(at - 1_000))
            );
            assert_eq!(store.rules(id).await.unwrap().len(), 1);
        }

        // The same UIDs again (a second daemon, a restart before the commit was seen): no
        // effect twice, the checkpoint never moves back.
        let again: Vec<(NewMessage, Effect)> = batch
            .iter()
            .map(|(m, _)| {
                let m = NewMessage {
                    id: uuid::Uuid::new_v4().to_string(),
                    ..m.clone()
                };
                let effect = match &m.visit_id {
                    Some(v) => human(v, 9_000),
                    None => Effect::None,
                };
                (m, effect)
            })
            .collect();
        let fresh = store
            .record_batch("robot", "INBOX", &again, checkpoint(12))
            .await
            .unwrap();
        assert_eq!(fresh, vec![false, false, false]);
        assert_eq!(
            store.visit(&a).await.unwrap().unwrap().first_reply_at,
            Some(5_000)
        );
        assert_eq!(
            store.checkpoint("robot", "INBOX").await.unwrap(),
            Some(checkpoint(14))
        );
    }
);

store_test!(
    a_reply_read_before_its_send_was_recorded_is_measured_from_the_send_recorded_since,
    |store| {
        // The batch read the visit while it was still `sending` (no send time to measure
        // from), and its 250 was committed before the batch was.
        let v = visit("late", "email", 0);
        store.plan_visit(&v, 0).await.unwrap();
        store.claim_due("me", 0, 60_000, 1, None).await.unwrap();
        store
            .mark_sending(
                &v.id,
                "me",
                &Sending {
                    message_id: "late@robot.test",
                    subject: "Devis",
                    business_email: "c@l.test",
                    reply_deadline_ms: 100_000,
                },
                0,
            )
            .await
            .unwrap();
        store.mark_sent(&v.id, 1_000, 100_000).await.unwrap();
        let unmeasured = Effect::HumanReply {
            visit_id: v.id.clone(),
            first_reply_at: 4_000,
            reply_date: None,
            time_to_reply_ms: None,
            time_to_reply_business_ms: None,
            correlation: "header".into(),
            score: 50.0,
            rules: Vec::new(),
        };
        assert!(store
            .record_message(&message(3, Some(&v.id)), &unmeasured)
            .await
            .unwrap());
        let got = store.visit(&v.id).await.unwrap().unwrap();
        assert_eq!(
            (got.outcome.as_deref(), got.time_to_reply_ms),
            (Some("replied"), Some(3_000))
        );
    }
);

store_test!(an_unmatched_message_is_kept_and_listed, |store| {
    store
        .record_message(&message(1, None), &Effect::None)
        .await
        .unwrap();
    let unmatched = store.unmatched_messages(0).await.unwrap();
    assert_eq!(unmatched.len(), 1);
    assert_eq!(
        unmatched[0].from_addr.as_deref(),
        Some("contact@lille.test")
    );
});

store_test!(
    a_deadline_ends_a_visit_as_acknowledged_only_or_no_reply,
    |store| {
        let acked = visit("acked", "email", 0);
        let silent = visit("silent", "email", 0);
        for v in [&acked, &silent] {
            store.plan_visit(v, 0).await.unwrap();
        }
        store.claim_due("me", 0, 60_000, 10, None).await.unwrap();
        for v in [&acked, &silent] {
            store
                .mark_sending(
                    &v.id,
                    "me",
                    &Sending {
                        message_id: &format!("{}@r", v.id),
                        subject: "D",
                        business_email: "c@l.test",
                        reply_deadline_ms: 10_000,
                    },
                    0,
                )
                .await
                .unwrap();
            store.mark_sent(&v.id, 100, 10_000).await.unwrap();
        }
        let ack = Effect::Ack {
            visit_id: acked.id.clone(),
            at: 200,
            time_to_ack_ms: Some(100),
        };
        store
            .record_message(&message(1, Some(&acked.id)), &ack)
            .await
            .unwrap();
        assert_eq!(store.expire_deadlines(9_999, 9_999).await.unwrap(), 0);
        assert_eq!(store.expire_deadlines(10_000, 10_000).await.unwrap(), 2);
        assert_eq!(
            store
                .visit(&acked.id)
                .await
                .unwrap()
                .unwrap()
                .outcome
                .as_deref(),
            Some("acknowledged_only")
        );
        assert_eq!(
            store
                .visit(&silent.id)
                .await
                .unwrap()
                .unwrap()
                .outcome
                .as_deref(),
            Some("no_reply")
        );
    }
);

store_test!(a_lease_has_one_owner_until_it_expires, |store| {
    assert!(store
        .acquire_lease("watcher:INBOX", "a", 0, 1_000)
        .await
        .unwrap());
    assert!(!store
        .acquire_lease("watcher:INBOX", "b", 500, 1_500)
        .await
        .unwrap());
    assert!(store
        .acquire_lease("watcher:INBOX", "a", 600, 1_600)
        .await
        .unwrap());
    assert!(store
        .acquire_lease("watcher:INBOX", "b", 2_000, 3_000)
        .await
        .unwrap());
    assert!(store.daemon_alive(0).await.is_ok_and(|alive| !alive));
});

store_test!(a_uidvalidity_change_replaces_the_checkpoint, |store| {
    store
        .set_checkpoint(
            "r",
            "INBOX",
            Checkpoint {
                uidvalidity: 1,
                last_uid: 90,
            },
        )
        .await
        .unwrap();
    store
        .set_checkpoint(
            "r",
            "INBOX",
            Checkpoint {
                uidvalidity: 1,
                last_uid: 50,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .checkpoint("r", "INBOX")
            .await
            .unwrap()
            .unwrap()
            .last_uid,
        90
    );
    store
        .set_checkpoint(
            "r",
            "INBOX",
            Checkpoint {
                uidvalidity: 2,
                last_uid: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        store.checkpoint("r", "INBOX").await.unwrap(),
        Some(Checkpoint {
            uidvalidity: 2,
            last_uid: 3
        })
    );
});

#[tokio::test]
async fn migrations_run_once_when_a_store_is_opened_again() {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let a = Store::connect(&url).await.unwrap();
    a.plan_visit(&visit("k", "email", 0), 0).await.unwrap();
    let b = Store::connect(&url).await.unwrap();
    assert_eq!(b.count_by_state("planned").await.unwrap(), 1);
}

const DAY: i64 = 86_400_000;

/// An email visit answered `age_days` ago, its reply stored with its bytes and rule evidence.
async fn answered_email(store: &Store, key: &str, now: i64, age_days: i64) -> String {
    let at = now - age_days * DAY;
    let v = visit(key, "email", at);
    store.plan_visit(&v, at).await.unwrap();
    store
        .claim_due("me", at, 60_000, 1, Some(&v.id))
        .await
        .unwrap();
    store
        .mark_sending(
            &v.id,
            "me",
            &Sending {
                message_id: &format!("{key}@robot.test"),
                subject: "Devis",
                business_email: "c@l.test",
                reply_deadline_ms: at + DAY,
            },
            at,
        )
        .await
        .unwrap();
    store.mark_sent(&v.id, at, at + DAY).await.unwrap();
    let m = NewMessage {
        arrived_at: at + 1_000,
        message_id: Some(format!("reply-{key}@x")),
        ..message(at / 1_000, Some(&v.id))
    };
    assert!(store
        .record_message(&m, &human(&v.id, at + 1_000))
        .await
        .unwrap());
    v.id
}

/// A call visit dialled `age_days` ago with a recording file (`path`), a transcript and rule
/// evidence, written as the call channel would.
async fn recorded_call(store: &Store, key: &str, now: i64, age_days: i64, path: &str) -> String {
    let at = now - age_days * DAY;
    let v = visit(key, "call", at);
    store.plan_visit(&v, at).await.unwrap();
    sqlx::query(
        "UPDATE visits SET state = 'done', outcome = 'answered', dialed_at = $2, answer_ms = 4200,
           recording = $3, transcript = 'Bonjour, agence de Lille, Marie à l''appareil' WHERE id = $1",
    )
    .bind(&v.id)
    .bind(at)
    .bind(path)
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO rule_results (visit_id, rule_id, position, hit, weight, evidence)
         VALUES ($1, 'accueil', 0, 1, 1, 'Bonjour, agence de Lille')",
    )
    .bind(&v.id)
    .execute(store.pool())
    .await
    .unwrap();
    v.id
}

async fn raw_of(store: &Store, key: &str) -> Option<Vec<u8>> {
    sqlx::query_scalar("SELECT raw FROM messages WHERE message_id = $1")
        .bind(format!("reply-{key}@x"))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn transcript_of(store: &Store, id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT transcript FROM visits WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

store_test!(
    retention_purges_old_personal_data_and_keeps_measurements,
    |store| {
        let dir = tempfile::tempdir().unwrap();
        let recordings = dir.path().join("recordings");
        std::fs::create_dir_all(&recordings).unwrap();
        let wav = |name: &str| {
            let p = recordings.join(name);
            std::fs::write(&p, b"RIFF").unwrap();
            p
        };
        let outside = dir.path().join("elsewhere.wav");
        std::fs::write(&outside, b"RIFF").unwrap();
        let now = 1_000 * DAY;
        let retention = mystery::config::Retention {
            raw_mail: Some(std::time::Duration::from_secs(180 * 86_400)),
            recordings: Some(std::time::Duration::from_secs(90 * 86_400)),
            transcripts: Some(std::time::Duration::from_secs(365 * 86_400)),
        };
        let old_mail = answered_email(&store, "old", now, 200).await;
        let new_mail = answered_email(&store, "new", now, 10).await;
        let (old_wav, new_wav) = (wav("old.wav"), wav("new.wav"));
        // 200 days: past the recordings' 90 days, inside the transcripts' 365.
        let old_call = recorded_call(&store, "call-old", now, 200, old_wav.to_str().unwrap()).await;
        let new_call = recorded_call(&store, "call-new", now, 10, new_wav.to_str().unwrap()).await;
        // 400 days: past everything; its recording lies outside the folder and is never deleted.
        let ancient = recorded_call(&store, "call-400", now, 400, outside.to_str().unwrap()).await;

        // Dry run: counts, and not one byte changes.
        let dry = store
            .purge(&retention, &recordings, now, true)
            .await
            .unwrap();
        assert_eq!(
            (dry.raw_mail, dry.evidence, dry.recordings, dry.transcripts),
            (1, 2, 2, 1),
            "{dry:?}"
        );
        assert!(raw_of(&store, "old").await.is_some());
        assert!(old_wav.exists() && outside.exists());
        assert!(store.rules(&old_mail).await.unwrap()[0].evidence.is_some());
        assert!(transcript_of(&store, &ancient).await.is_some());

        let done = store
            .purge(&retention, &recordings, now, false)
            .await
            .unwrap();
        assert_eq!(
            (
                done.raw_mail,
                done.evidence,
                done.recordings,
                done.recordings_failed,
                done.transcripts
            ),
            (1, 2, 1, 1, 1),
            "{done:?}"
        );
        // Raw mail: old bytes gone, recent ones kept; the measurements of both untouched.
        assert!(raw_of(&store, "old").await.is_none());
        assert!(raw_of(&store, "new").await.is_some());
        let old = store.visit(&old_mail).await.unwrap().unwrap();
        assert_eq!(old.outcome.as_deref(), Some("replied"));
        assert_eq!(old.score, Some(75.0));
        assert!(old.time_to_reply_ms.is_some());
        let rules = store.rules(&old_mail).await.unwrap();
        assert_eq!(
            (rules[0].hit, rules[0].weight, rules[0].evidence.clone()),
            (true, 3, None)
        );
        assert!(store.rules(&new_mail).await.unwrap()[0].evidence.is_some());
        // Recordings: the old file deleted and forgotten, the recent one kept, the stray kept.
        assert!(!old_wav.exists() && new_wav.exists() && outside.exists());
        let call = store.visit(&old_call).await.unwrap().unwrap();
        assert_eq!((call.recording, call.answer_ms), (None, Some(4200)));
        assert!(store
            .visit(&new_call)
            .await
            .unwrap()
            .unwrap()
            .recording
            .is_some());
        assert!(store
            .visit(&ancient)
            .await
            .unwrap()
            .unwrap()
            .recording
            .is_some());
        // Transcripts: only past 365 days, with that call's evidence; the 200-day one stays.
        assert!(transcript_of(&store, &ancient).await.is_none());
        assert!(store.rules(&ancient).await.unwrap()[0].evidence.is_none());
        assert!(store.rules(&ancient).await.unwrap()[0].hit);
        assert!(transcript_of(&store, &old_call).await.is_some());
        assert!(store.rules(&old_call).await.unwrap()[0].evidence.is_some());

        // A second purge has nothing left to do but the stray recording it refuses to delete.
        let again = store
            .purge(&retention, &recordings, now, false)
            .await
            .unwrap();
        assert_eq!(
            (
                again.raw_mail,
                again.evidence,
                again.recordings,
                again.transcripts
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(again.recordings_failed, 1);
    }
);

store_test!(
    issue7_a_reply_seen_before_the_250_was_read_never_gets_a_negative_time_to_reply,
    |store| {
        let v = visit("early", "email", 0);
        store.plan_visit(&v, 0).await.unwrap();
        store.claim_due("me", 0, 60_000, 10, None).await.unwrap();
        store
            .mark_sending(
                &v.id,
                "me",
                &Sending {
                    message_id: &format!("{}@r", v.id),
                    subject: "D",
                    business_email: "c@l.test",
                    reply_deadline_ms: 10_000,
                },
                0,
            )
            .await
            .unwrap();
        // The watcher takes the reply in (at 5 000) before this process reads the 250 (5 180).
        let mut reply = human(&v.id, 5_000);
        if let Effect::HumanReply {
            time_to_reply_ms,
            time_to_reply_business_ms,
            ..
        } = &mut reply
        {
            *time_to_reply_ms = None;
            *time_to_reply_business_ms = None;
        }
        store
            .record_message(&message(1, Some(&v.id)), &reply)
            .await
            .unwrap();
        store.mark_sent(&v.id, 5_180, 15_180).await.unwrap();
        let got = store.visit(&v.id).await.unwrap().unwrap();
        assert_eq!(got.outcome.as_deref(), Some("replied"));
        assert_eq!(got.sent_at, Some(5_180));
        assert_eq!(got.time_to_reply_ms, Some(0), "{got:?}");
    }
);

store_test!(
    issue10_form_screenshots_are_purged_with_recordings_and_their_list_kept,
    |store| {
        let dir = tempfile::tempdir().unwrap();
        let recordings = dir.path().join("recordings");
        std::fs::create_dir_all(&recordings).unwrap();
        let now = 1_000 * DAY;
        let mut ids = Vec::new();
        for age in [200, 10] {
            let v = visit(&format!("form-{age}"), "form", now - age * DAY);
            store.plan_visit(&v, now).await.unwrap();
            for kind in ["form", "result"] {
                let p = recordings.join(format!("{}.{kind}.png", v.id));
                std::fs::write(&p, b"\x89PNG").unwrap();
                store
                    .add_screenshot(&v.id, kind, p.to_str().unwrap(), now - age * DAY)
                    .await
                    .unwrap();
            }
            ids.push(v.id);
        }
        let retention = mystery::config::Retention {
            recordings: Some(std::time::Duration::from_secs(90 * 86_400)),
            ..Default::default()
        };
        let dry = store
            .purge(&retention, &recordings, now, true)
            .await
            .unwrap();
        assert_eq!(dry.screenshots, 2, "{dry:?}");
        let done = store
            .purge(&retention, &recordings, now, false)
            .await
            .unwrap();
        assert_eq!(
            (done.screenshots, done.recordings_failed),
            (2, 0),
            "{done:?}"
        );
        let old = store.screenshots(&ids[0]).await.unwrap();
        assert_eq!(
            old.iter()
                .map(|s| (s.kind.as_str(), s.path.is_none()))
                .collect::<Vec<_>>(),
            [("form", true), ("result", true)]
        );
        let new = store.screenshots(&ids[1]).await.unwrap();
        assert!(new.iter().all(|s| s
            .path
            .as_deref()
            .is_some_and(|p| std::path::Path::new(p).exists())));
        assert_eq!(std::fs::read_dir(&recordings).unwrap().count(), 2);
    }
);

store_test!(
    issue10_a_form_left_sending_by_a_crash_is_never_filled_again,
    |store| {
        let now = 1_000 * DAY;
        let v = visit("form-crash", "form", now);
        store.plan_visit(&v, now).await.unwrap();
        let claimed = store.claim_due("dead", now, 1_000, 10, None).await.unwrap();
        assert_eq!(claimed.len(), 1);
        let f = mystery::store::FormSending {
            form_url: "https://www.agence.fr/contact",
            business_email: None,
            subject: None,
            reply_deadline_ms: now + DAY,
        };
        assert!(store
            .mark_form_sending(&v.id, "dead", &f, now)
            .await
            .unwrap());
        // Another process finds the lease expired: the visit waits for replies, never refilled.
        store.recover_expired(now + 10_000, "alive").await.unwrap();
        let after = store.visit(&v.id).await.unwrap().unwrap();
        assert_eq!(
            (after.state.as_str(), after.send_uncertain),
            ("awaiting_reply", true)
        );
        assert!(store
            .claim_due("alive", now + 20_000, 1_000, 10, None)
            .await
            .unwrap()
            .is_empty());
        // One still filling (nothing clicked yet) goes back to planned and is filled again.
        let w = visit("form-filling", "form", now);
        store.plan_visit(&w, now).await.unwrap();
        store.claim_due("dead", now, 1_000, 10, None).await.unwrap();
        store.recover_expired(now + 10_000, "alive").await.unwrap();
        assert_eq!(store.visit(&w.id).await.unwrap().unwrap().state, "planned");
    }
);

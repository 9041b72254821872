//! Taking in replies by the batch (issue 11): several messages per IMAP fetch, bounded in
//! bytes, and the reply candidates loaded once per batch, with every message still taken in
//! once, in UID order, and measured from the visit as it is when the message is read.

use crate::common::{self, Backend};
use crate::email_lab::{lab_context, plan_now};
use mystery::email::reply::{self, Arrival, Candidates};
use mystery::store::Sending;

fn reply_to(mid: &str, from: &str, u: &str) -> Vec<u8> {
    format!(
        "From: Marc Durand <{from}>\r\nTo: Claire Dupont <claire.dupont@robot.test>\r\n\
         Subject: Re: Demande de devis {u}\r\nMessage-ID: <r-{u}@lille.branch.test>\r\n\
         In-Reply-To: <{mid}>\r\nReferences: <{mid}>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Bonjour Madame Dupont,\r\nNos tarifs commencent à 480 €.\r\nCordialement,\r\nMarc Durand\r\n"
    )
    .into_bytes()
}

/// A reply by reference code only (no thread headers): found in the batch's list, as well.
fn reply_by_reference(reference: &str, from: &str, u: &str) -> Vec<u8> {
    format!(
        "From: Marc Durand <{from}>\r\nTo: Claire Dupont <claire.dupont@robot.test>\r\n\
         Subject: Votre demande {u}\r\nMessage-ID: <r-{u}@lille.branch.test>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         Bonjour Madame Dupont,\r\nPour votre demande {reference}, nos tarifs commencent à 480 €.\r\n\
         Cordialement,\r\nMarc Durand\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reply_in_a_batch_is_measured_from_a_send_recorded_after_the_batch_was_loaded() {
    for threaded in [true, false] {
        reply_measured_from_a_late_send(threaded).await;
    }
}

async fn reply_measured_from_a_late_send(threaded: bool) {
    let u = common::unique();
    let branch = format!("never.{u}@lille.branch.test");
    let (cx, _tmp) = lab_context(Backend::Sqlite, &[("late", &branch)]).await;
    let id = plan_now(&cx, "late", "devis").await;
    cx.store
        .claim_due(&cx.instance, cx.now_ms(), 60_000, 1, Some(&id))
        .await
        .unwrap();
    let mid = format!("{u}@robot.test");
    let now = cx.now_ms();
    assert!(cx
        .store
        .mark_sending(
            &id,
            &cx.instance,
            &Sending {
                message_id: &mid,
                subject: "Demande de devis",
                business_email: &branch,
                reply_deadline_ms: now + 60_000,
            },
            now,
        )
        .await
        .unwrap());
    // The batch's list sees the visit still sending, without a send time...
    let batch = Candidates::load(&cx).await.unwrap();
    // ...then its 250 is recorded before the reply is read.
    let sent_at = now + 100;
    cx.store
        .mark_sent(&id, sent_at, sent_at + 60_000)
        .await
        .unwrap();
    let arrival = Arrival {
        account: "robot@robot.test".into(),
        mailbox: format!("it-{u}"),
        uidvalidity: 1,
        uid: 1,
        seen_at: mystery::clock::from_ms(sent_at + 5_000),
        internal_date: None,
        raw: if threaded {
            reply_to(&mid, &branch, &u)
        } else {
            let reference = cx.store.visit(&id).await.unwrap().unwrap().reference;
            reply_by_reference(&reference.unwrap(), &branch, &u)
        },
        too_large: None,
    };
    reply::take_in_with(&cx, arrival, &batch).await.unwrap();
    let v = cx.store.visit(&id).await.unwrap().unwrap();
    assert_eq!(
        v.outcome.as_deref(),
        Some("replied"),
        "threaded: {threaded}"
    );
    let evidence = if threaded { "header" } else { "reference" };
    assert_eq!(v.correlation.as_deref(), Some(evidence));
    assert_eq!(v.time_to_reply_ms, Some(5_000), "threaded: {threaded}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replies_spanning_several_fetch_batches_are_each_taken_in_once_in_uid_order() {
    let u = common::unique();
    let branch = format!("never.{u}@lille.branch.test");
    let (cx, _tmp) = lab_context(Backend::Sqlite, &[("batch", &branch)]).await;
    let id = plan_now(&cx, "batch", "devis").await;
    let claimed = cx
        .store
        .claim_due(&cx.instance, cx.now_ms(), 60_000, 1, Some(&id))
        .await
        .unwrap();
    mystery::visit::run(&cx, claimed.into_iter().next().unwrap())
        .await
        .unwrap();
    let mid = cx
        .store
        .visit(&id)
        .await
        .unwrap()
        .unwrap()
        .message_id
        .unwrap();

    // A private folder: 70 messages of 200 kB (two fetch chunks of 50 UIDs, the first split
    // by the byte bound), the reply to our visit among them.
    let folder = format!("it-ingest-{u}");
    let imap = cx.config.imap.clone().unwrap();
    let mut session = mystery::email::inbox::connect(&imap).await.unwrap();
    session.create(&folder).await.unwrap();
    let filler = "x".repeat(76) + "\r\n";
    for i in 0..70 {
        let message = if i == 57 {
            reply_to(&mid, &branch, &u)
        } else {
            format!(
                "From: other{i}@paris.branch.test\r\nSubject: filler {u} {i}\r\n\r\n{}",
                filler.repeat(2_600)
            )
            .into_bytes()
        };
        session.append(&folder, None, None, &message).await.unwrap();
    }
    let selected = session.select(&folder).await.unwrap();
    let uidvalidity = i64::from(selected.uid_validity.unwrap());

    let taken =
        mystery::email::inbox::take_new(&cx, &mut session, &imap.username, &folder, uidvalidity)
            .await
            .unwrap();
    let again =
        mystery::email::inbox::take_new(&cx, &mut session, &imap.username, &folder, uidvalidity)
            .await
            .unwrap();
    let last_uid = session
        .uid_search("ALL")
        .await
        .unwrap()
        .into_iter()
        .max()
        .unwrap();
    session.select("INBOX").await.unwrap();
    session.delete(&folder).await.unwrap();
    let _ = session.logout().await;

    assert_eq!((taken, again), (70, 0));
    let cp = cx
        .store
        .checkpoint(&imap.username, &folder)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.last_uid, i64::from(last_uid));
    let unmatched: Vec<_> = cx
        .store
        .unmatched_messages(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.mailbox == folder)
        .collect();
    assert_eq!(unmatched.len(), 69);
    assert!(unmatched.iter().all(|m| m.parse_error.is_none()));
    let v = cx.store.visit(&id).await.unwrap().unwrap();
    assert_eq!(v.outcome.as_deref(), Some("replied"));
    assert!(v.time_to_reply_ms.is_some_and(|ms| ms >= 0), "{v:?}");
}

/// A reply by thread headers whose Subject holds a NUL (a broken mailer), which PostgreSQL
/// refuses in text.
fn reply_with_nul_subject(mid: &str, from: &str, u: &str) -> Vec<u8> {
    let mut raw = reply_to(mid, from, u);
    let at = raw
        .windows(9)
        .position(|w| w == b"Subject: ")
        .expect("subject")
        + 9;
    raw.insert(at, 0);
    raw
}

#[tokio::test(flavor = "multi_thread")]
async fn issue11_a_message_the_store_refuses_is_kept_as_unparseable_and_the_rest_of_its_batch_is_taken_in(
) {
    let u = common::unique();
    let branches: Vec<(String, String)> = (0..3)
        .map(|i| (format!("b{i}"), format!("never.{u}.{i}@lille.branch.test")))
        .collect();
    let pairs: Vec<(&str, &str)> = branches
        .iter()
        .map(|(id, email)| (id.as_str(), email.as_str()))
        .collect();
    let (cx, _tmp) = lab_context(Backend::Postgres, &pairs).await;
    let mut mids = Vec::new();
    let mut ids = Vec::new();
    for (i, (business, email)) in branches.iter().enumerate() {
        let id = plan_now(&cx, business, "devis").await;
        cx.store
            .claim_due(&cx.instance, cx.now_ms(), 60_000, 1, Some(&id))
            .await
            .unwrap();
        let mid = format!("{u}.{i}@robot.test");
        let now = cx.now_ms();
        assert!(cx
            .store
            .mark_sending(
                &id,
                &cx.instance,
                &Sending {
                    message_id: &mid,
                    subject: "Demande de devis",
                    business_email: email,
                    reply_deadline_ms: now + 600_000,
                },
                now,
            )
            .await
            .unwrap());
        cx.store.mark_sent(&id, now, now + 600_000).await.unwrap();
        mids.push(mid);
        ids.push(id);
    }
    let folder = format!("it-{u}");
    let arrivals: Vec<Arrival> = (0..3)
        .map(|i| Arrival {
            account: "robot@robot.test".into(),
            mailbox: folder.clone(),
            uidvalidity: 1,
            uid: 10 + i as i64,
            seen_at: mystery::clock::from_ms(cx.now_ms()),
            internal_date: None,
            raw: if i == 1 {
                reply_with_nul_subject(&mids[i], &branches[i].1, &u)
            } else {
                reply_to(&mids[i], &branches[i].1, &u)
            },
            too_large: None,
        })
        .collect();
    let checkpoint = mystery::store::Checkpoint {
        uidvalidity: 1,
        last_uid: 15,
    };
    let taken = reply::take_in_batch(
        &cx,
        "robot@robot.test",
        &folder,
        arrivals,
        checkpoint,
        &Candidates::when_needed(),
    )
    .await
    .unwrap();

    assert_eq!(taken, 3);
    assert_eq!(
        cx.store
            .checkpoint("robot@robot.test", &folder)
            .await
            .unwrap(),
        Some(checkpoint)
    );
    let outcomes: Vec<Option<String>> = {
        let mut out = Vec::new();
        for id in &ids {
            out.push(cx.store.visit(id).await.unwrap().unwrap().outcome);
        }
        out
    };
    assert_eq!(
        outcomes,
        vec![Some("replied".to_owned()), None, Some("replied".to_owned())]
    );
    let kept: Vec<_> = cx
        .store
        .unmatched_messages(0)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.mailbox == folder)
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].class, "unparseable");
    assert!(
        kept[0]
            .parse_error
            .as_deref()
            .is_some_and(|e| e.contains("refused by the store")),
        "{kept:?}"
    );
}

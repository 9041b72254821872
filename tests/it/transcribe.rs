//! Issue 8: what the branch said. Answered calls against SIPp phones that speak known texts
//! (scripts/lab-voices, fixtures/voices/cases.tsv) get transcripts, rule hits and scores
//! through the daemon's queue; bad recordings and models end with a reason; two workers on
//! PostgreSQL never transcribe one call twice.

use crate::common::{self, Backend};
use crate::email_lab::{plan_now, wait_done, Daemon};
use mystery::store::{SeedVisit, Visit};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The model the README's set-up installs (scripts/fetch-model); the suite needs it.
fn model() -> PathBuf {
    let path = mystery::config::TranscribeConfig::default_model();
    assert!(
        path.is_file(),
        "no transcription model at {}: run scripts/fetch-model (scripts/test does)",
        path.display()
    );
    path
}

/// The lab voices: name → (port, ring ms, greeting text, answer text).
fn voices() -> HashMap<String, (u16, i64, String, String)> {
    let text = std::fs::read_to_string(common::repo().join("fixtures/voices/cases.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[col("name")].to_string(),
                (
                    f[col("port")].parse().unwrap(),
                    f[col("ring_ms")].parse().unwrap(),
                    f[col("greeting")].to_string(),
                    f[col("answer")].to_string(),
                ),
            )
        })
        .collect()
}

const SCENARIOS: &str = r#"
[sip]
bind = "127.0.0.1:0"
transport = "udp"
from = "sip:robot@robot.test"
rtp_ports = "32000-32999"

[transcribe]
workers = 1

[[scenarios]]
id = "accueil"
channel = "call"
ring_timeout = "25s"
script = [ { listen = "10s" }, { record = "1s" }, { hangup = true } ]
expect = [
  { id = "accueil", builtin = "greeting" },
  { id = "nom", builtin = "names_business", weight = 2 },
  { id = "sonneries", builtin = "answered_within_rings", rings = 3 },
]

[[scenarios]]
id = "welcome"
channel = "call"
language = "en"
ring_timeout = "25s"
script = [ { listen = "10s" }, { record = "1s" }, { hangup = true } ]
expect = [
  { id = "accueil", builtin = "greeting" },
  { id = "nom", builtin = "names_business" },
]

[[scenarios]]
id = "horaires"
channel = "call"
ring_timeout = "25s"
script = [ { listen = "8s" }, { play = "PROMPT" }, { record = "9s" }, { hangup = true } ]
expect = [
  { id = "accueil", builtin = "greeting" },
  { id = "jours", all = ["mardi", "samedi"] },
  { id = "ferme", none = ["fermé", "dimanche"] },
]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn answered_lab_calls_get_transcripts_and_rule_hits_that_match_what_the_phone_said() {
    model();
    crate::call::lab();
    let lab = common::lab();
    let voices = voices();
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let prompt = common::repo().join("fixtures/prompts/horaires.wav");
    let mut extra = SCENARIOS.replace("PROMPT", prompt.to_str().unwrap());
    for name in ["named", "unnamed", "late", "noisy", "english", "answers"] {
        let (port, ..) = voices[name];
        extra += &format!(
            "\n[[businesses]]\nid = \"{name}\"\nname = \"Boulangerie Dupont\"\nphone = \"sip:{name}@127.0.0.1:{port}\"\n"
        );
    }
    // No mailbox: these calls need none, and the suite's other tests share the lab's.
    let mut text = common::without_mail(&common::lab_config(lab, &url, &[], &extra));
    text = text.replacen(
        "[storage]\n",
        &format!(
            "[storage]\nrecordings_dir = \"{}\"\n",
            tmp.path().join("rec").display()
        ),
        1,
    );
    let config = common::config_from(tmp.path(), &text);
    let store = mystery::store::Store::connect(&url).await.unwrap();
    let cx = common::context(config, store);
    let daemon = Daemon::start(cx.clone()).await;
    let plan = [
        ("named", "accueil"),
        ("unnamed", "accueil"),
        ("late", "accueil"),
        ("noisy", "accueil"),
        ("english", "welcome"),
        ("answers", "horaires"),
    ];
    let mut ids = Vec::new();
    for (b, s) in plan {
        ids.push(plan_now(&cx, b, s).await);
    }
    let calls = wait_done(&cx, &ids, Duration::from_secs(90)).await;
    for v in &calls {
        assert_eq!(v.outcome.as_deref(), Some("answered"), "{v:?}");
    }
    let visits = wait_transcribed(&cx, &ids, Duration::from_secs(600)).await;
    daemon.stop().await;

    let by_name: HashMap<&str, &Visit> = plan.iter().map(|(b, _)| *b).zip(&visits).collect();
    let mut summary = String::new();
    let mut rule_hits: HashMap<&str, HashMap<String, bool>> = HashMap::new();
    for (name, v) in &by_name {
        let rules = cx.store.rules(&v.id).await.unwrap();
        rule_hits.insert(
            name,
            rules.iter().map(|r| (r.rule_id.clone(), r.hit)).collect(),
        );
        summary += &format!(
            "{name}: {:?} {:?} rings {:?} score {:?}\n  {:?}\n",
            v.transcript_status,
            v.transcript,
            v.rings,
            v.score,
            rules
                .iter()
                .map(|r| (r.rule_id.as_str(), r.hit, r.evidence.as_deref()))
                .collect::<Vec<_>>()
        );
    }
    eprintln!("{summary}");
    let expect = |name: &str, rule: &str, hit: bool| {
        assert_eq!(
            by_name[name].transcript_status.as_deref(),
            Some("done"),
            "{summary}"
        );
        assert_eq!(rule_hits[name][rule], hit, "{name} {rule}\n{summary}");
    };
    expect("named", "accueil", true);
    expect("named", "nom", true);
    expect("named", "sonneries", true);
    expect("unnamed", "accueil", false);
    expect("unnamed", "nom", false);
    // 16 s of ringing: the fourth French ring.
    expect("unnamed", "sonneries", false);
    assert_eq!(by_name["unnamed"].rings, Some(4));
    expect("late", "accueil", true);
    expect("late", "nom", true);
    expect("noisy", "accueil", true);
    expect("noisy", "nom", true);
    expect("english", "accueil", true);
    expect("english", "nom", true);
    expect("answers", "accueil", true);
    expect("answers", "jours", true);
    expect("answers", "ferme", true);
    assert_eq!(by_name["named"].score, Some(100.0));
    // greeting 1 + name 2 + rings 1, none hit.
    assert_eq!(by_name["unnamed"].score, Some(0.0));

    // Segments are dated from the answer: the late branch speaks 4 s after picking up, and the
    // answer to the question comes after the greeting.
    let segments = |name: &str| -> Vec<mystery::transcript::Segment> {
        serde_json::from_str(by_name[name].segments.as_deref().unwrap()).unwrap()
    };
    let late = segments("late");
    assert!(late[0].start_ms >= 3_000, "{late:?}");
    let answers = segments("answers");
    let mardi = answers
        .iter()
        .find(|s| s.text.to_lowercase().contains("mardi"))
        .unwrap();
    assert!(mardi.start_ms >= 6_000, "{answers:?}");
    assert!(answers.iter().all(|s| (0.0..=1.0).contains(&s.confidence)));
    let evidence = cx.store.rules(&by_name["late"].id).await.unwrap();
    let greeting = evidence.iter().find(|r| r.rule_id == "accueil").unwrap();
    assert!(
        greeting.evidence.as_deref().unwrap().contains("at 0:0"),
        "{greeting:?}"
    );
    assert_eq!(
        by_name["english"].transcript_language.as_deref(),
        Some("en")
    );

    // The report carries them under the contract's names.
    let report = mystery::report::load(&cx.store, &Default::default())
        .await
        .unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let named = json
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == by_name["named"].id.as_str())
        .unwrap();
    assert_eq!(named["transcript_status"], "done");
    assert_eq!(named["rings"], 1);
    assert!(named["transcript"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("bonjour"));
    assert!(named["segments"][0]["start_ms"].is_i64());
    assert_eq!(named["score"], 100.0);
    assert_eq!(named["rules"].as_array().unwrap().len(), 3);
}

async fn wait_transcribed(
    cx: &Arc<mystery::Context>,
    ids: &[String],
    limit: Duration,
) -> Vec<Visit> {
    let start = Instant::now();
    loop {
        let mut all = Vec::new();
        for id in ids {
            all.push(cx.store.visit(id).await.unwrap().unwrap());
        }
        if all
            .iter()
            .all(|v| v.transcript_status.as_deref() != Some("pending"))
        {
            return all;
        }
        assert!(
            start.elapsed() < limit,
            "transcripts still pending after {limit:?}: {:?}",
            all.iter()
                .map(|v| (&v.business_id, &v.transcript_status))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Finished call visits whose recordings are the given files, queued for transcription.
async fn queue(store: &mystery::store::Store, recordings: &[(&str, Option<&Path>)]) -> Vec<String> {
    let seeds: Vec<SeedVisit> = recordings
        .iter()
        .map(|(business, _)| SeedVisit {
            id: uuid::Uuid::new_v4().to_string(),
            business_id: business.to_string(),
            scenario_id: "accueil".into(),
            channel: "call".into(),
            outcome: Some("answered".into()),
            due_at: 1_000,
            answer_ms: Some(3_000),
            ..Default::default()
        })
        .collect();
    store.seed_finished_visits(&seeds).await.unwrap();
    for (seed, (_, path)) in seeds.iter().zip(recordings) {
        sqlx::query(
            "UPDATE visits SET recording = $2, transcript_status = 'pending', rings = 1, ring_ms = 2000 WHERE id = $1",
        )
        .bind(&seed.id)
        .bind(path.map(|p| p.display().to_string()))
        .execute(store.pool())
        .await
        .unwrap();
    }
    seeds.into_iter().map(|s| s.id).collect()
}

async fn context_with(tmp: &Path, url: &str, transcribe: &str) -> Arc<mystery::Context> {
    let text = format!(
        "[storage]\nurl = \"{url}\"\n\n[transcribe]\n{transcribe}\n\n\
         [[personas]]\nid = \"p\"\nname = \"Paul\"\nemail = \"paul@robot.test\"\n\n\
         [[businesses]]\nid = \"b\"\nname = \"Boulangerie Dupont\"\nphone = \"+33321000000\"\n\n\
         [[scenarios]]\nid = \"accueil\"\nchannel = \"call\"\nscript = [{{ listen = \"8s\" }}]\n\
         expect = [{{ id = \"accueil\", builtin = \"greeting\" }}, {{ id = \"sonneries\", builtin = \"answered_within_rings\", rings = 3 }}]\n"
    );
    let config = common::config_from(tmp, &text);
    let store = mystery::store::Store::connect(url).await.unwrap();
    common::context(config, store)
}

/// Works the queue to the end in this process, as workers do (lower priority); returns the
/// visits worked, in order.
async fn drain(cx: &Arc<mystery::Context>) -> Vec<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut worked = Vec::new();
    for _ in 0..100 {
        match mystery::transcribe::work_one_low_priority(cx, None, stop.clone())
            .await
            .unwrap()
        {
            Some(id) => worked.push(id),
            None => break,
        }
    }
    worked
}

fn write_wav(path: &Path, samples: &[i16]) {
    mystery::call::media::wav::write_recording(path, samples).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn silence_noise_long_and_damaged_recordings_each_end_with_a_reason_and_the_queue_goes_on() {
    model();
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let cx = context_with(tmp.path(), &url, "").await;
    let dir = tmp.path();
    let silence = dir.join("silence.wav");
    write_wav(&silence, &vec![0i16; 8000 * 5]);
    // White noise at about -12 dBFS: loud enough for the voice detector, no words in it.
    let noise = dir.join("noise.wav");
    let mut x: u32 = 12345;
    let samples: Vec<i16> = (0..8000 * 6)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((x >> 16) as i16 as i32 / 4) as i16
        })
        .collect();
    write_wav(&noise, &samples);
    // Two hours of a WAV header's promise: a sparse file, only the first `max_audio` is read.
    let long = dir.join("long.wav");
    write_wav(&long, &vec![0i16; 8000]);
    {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&long, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let data = 2 * 8000 * 7200u32;
        let f = std::fs::OpenOptions::new().write(true).open(&long).unwrap();
        f.set_len(44 + u64::from(data)).unwrap();
        use std::io::{Seek, SeekFrom, Write};
        let mut f = f;
        f.seek(SeekFrom::Start(4)).unwrap();
        f.write_all(&(36 + data).to_le_bytes()).unwrap();
        f.seek(SeekFrom::Start(40)).unwrap();
        f.write_all(&data.to_le_bytes()).unwrap();
    }
    let corrupt = dir.join("corrupt.wav");
    std::fs::write(
        &corrupt,
        b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not a wave file",
    )
    .unwrap();
    let gone = dir.join("purged.wav");
    let ids = queue(
        &cx.store,
        &[
            ("b", Some(&silence)),
            ("b", Some(&noise)),
            ("b", Some(&long)),
            ("b", Some(&corrupt)),
            ("b", Some(&gone)),
            ("b", None),
        ],
    )
    .await;
    let worked = drain(&cx).await;
    assert_eq!(worked.len(), ids.len(), "every job worked once: {worked:?}");
    let mut v = Vec::new();
    for id in &ids {
        v.push(cx.store.visit(id).await.unwrap().unwrap());
    }
    let [silent, noisy, long, corrupt, gone, none]: [Visit; 6] = v.try_into().unwrap();
    assert_eq!(silent.transcript_status.as_deref(), Some("done"));
    assert_eq!(silent.transcript.as_deref(), Some(""));
    assert!(silent.transcript_reason.unwrap().contains("no speech"));
    // Silence is scored: the greeting is missing, the rings are within the limit.
    assert_eq!(silent.score, Some(50.0));
    assert_eq!(
        noisy.transcript_status.as_deref(),
        Some("done"),
        "{noisy:?}"
    );
    eprintln!("noise heard as: {:?}", noisy.transcript);
    let rules = cx.store.rules(&noisy.id).await.unwrap();
    assert!(
        !rules.iter().find(|r| r.rule_id == "accueil").unwrap().hit,
        "{rules:?}"
    );
    assert_eq!(long.transcript_status.as_deref(), Some("done"), "{long:?}");
    let reason = long.transcript_reason.unwrap();
    assert!(
        reason.contains("only the first 10m of 2h heard"),
        "{reason}"
    );
    assert_eq!(corrupt.transcript_status.as_deref(), Some("failed"));
    assert!(corrupt
        .transcript_reason
        .unwrap()
        .contains("not a readable WAV"));
    assert_eq!(gone.transcript_status.as_deref(), Some("failed"));
    assert!(gone.transcript_reason.unwrap().contains("is gone"));
    assert_eq!(none.transcript_status.as_deref(), Some("failed"));
    assert!(none.transcript_reason.unwrap().contains("no recording"));
    // Nothing about the calls themselves changed.
    assert!([silent.outcome, corrupt.outcome]
        .iter()
        .all(|o| o.as_deref() == Some("answered")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_foreign_model_is_a_reason_on_the_visit_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Sqlite, tmp.path()).await;
    let wav = tmp.path().join("hello.wav");
    write_wav(&wav, &vec![1000i16; 8000]);
    let missing = context_with(tmp.path(), &url, "model = \"/nonexistent/ggml-base.bin\"").await;
    let ids = queue(&missing.store, &[("b", Some(&wav))]).await;
    drain(&missing).await;
    let v = missing.store.visit(&ids[0]).await.unwrap().unwrap();
    assert_eq!(v.transcript_status.as_deref(), Some("no_model"));
    assert!(v.transcript_reason.unwrap().contains("scripts/fetch-model"));

    // A CTranslate2 model.bin where a ggml file is expected.
    let foreign = tmp.path().join("model.bin");
    let mut bytes = b"\x06\x00\x00\x00\x0c\x00WhisperSpec\x00".to_vec();
    bytes.resize(4096, 7);
    std::fs::write(&foreign, bytes).unwrap();
    let cx = context_with(
        tmp.path(),
        &url,
        &format!("model = \"{}\"", foreign.display()),
    )
    .await;
    let ids = queue(&cx.store, &[("b", Some(&wav)), ("b", Some(&wav))]).await;
    assert_eq!(drain(&cx).await.len(), 2, "the queue goes on");
    for id in ids {
        let v = cx.store.visit(&id).await.unwrap().unwrap();
        assert_eq!(v.transcript_status.as_deref(), Some("failed"));
        assert!(v
            .transcript_reason
            .unwrap()
            .contains("not a whisper.cpp ggml model"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_on_postgres_never_transcribe_one_call_twice_and_a_dead_worker_s_job_is_resumed(
) {
    let tmp = tempfile::tempdir().unwrap();
    let url = common::store_url(Backend::Postgres, tmp.path()).await;
    let silence = tmp.path().join("silence.wav");
    write_wav(&silence, &vec![0i16; 8000]);
    let a = context_with(tmp.path(), &url, "").await;
    let b = context_with(tmp.path(), &url, "").await;
    let recordings: Vec<(&str, Option<&Path>)> =
        (0..30).map(|_| ("b", Some(silence.as_path()))).collect();
    let mut ids = queue(&a.store, &recordings).await;
    // A worker that died holding a job: its lease has run out.
    sqlx::query("UPDATE visits SET transcript_owner = 'dead:transcribe', transcript_lease_until = 1 WHERE id = $1")
        .bind(&ids[0])
        .execute(a.store.pool())
        .await
        .unwrap();
    // And one whose lease still runs is left alone.
    let held = queue(&a.store, &[("b", Some(silence.as_path()))])
        .await
        .remove(0);
    sqlx::query("UPDATE visits SET transcript_owner = 'alive:transcribe', transcript_lease_until = $2 WHERE id = $1")
        .bind(&held)
        .bind(i64::MAX / 2)
        .execute(a.store.pool())
        .await
        .unwrap();
    let (wa, wb) = tokio::join!(drain(&a), drain(&b));
    let mut all: Vec<String> = wa.iter().chain(&wb).cloned().collect();
    assert_eq!(all.len(), 30, "a: {} b: {}", wa.len(), wb.len());
    all.sort();
    all.dedup();
    ids.sort();
    assert_eq!(all, ids, "each call transcribed exactly once");
    eprintln!("daemon a transcribed {}, daemon b {}", wa.len(), wb.len());

    // The claims themselves, racing: two owners claim 200 jobs in interleaved turns on one
    // PostgreSQL; each job goes to exactly one of them.
    let more: Vec<(&str, Option<&Path>)> =
        (0..200).map(|_| ("b", Some(silence.as_path()))).collect();
    let mut queued = queue(&a.store, &more).await;
    let claim_all = |cx: Arc<mystery::Context>, owner: &'static str| async move {
        let mut got = Vec::new();
        for _ in 0..400 {
            match cx
                .store
                .claim_transcript(owner, cx.now_ms(), 60_000, None)
                .await
                .unwrap()
            {
                Some(job) => got.push(job.visit_id),
                None => break,
            }
        }
        got
    };
    let (ca, cb) = tokio::join!(
        tokio::spawn(claim_all(a.clone(), "a:transcribe")),
        tokio::spawn(claim_all(b.clone(), "b:transcribe"))
    );
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    let mut claimed: Vec<String> = ca.iter().chain(&cb).cloned().collect();
    assert_eq!(claimed.len(), 200, "a: {} b: {}", ca.len(), cb.len());
    claimed.sort();
    claimed.dedup();
    queued.sort();
    assert_eq!(claimed, queued, "every job claimed exactly once");
    eprintln!("racing claims: a {}, b {}", ca.len(), cb.len());
    // Both started together: a claimer that came back empty-handed while work was queued (two
    // claimers on one row, without SKIP LOCKED) stopped at once and got none (it was 200/0).
    assert!(
        !ca.is_empty() && !cb.is_empty(),
        "a {} b {}",
        ca.len(),
        cb.len()
    );
    let v = a.store.visit(&held).await.unwrap().unwrap();
    assert_eq!(v.transcript_status.as_deref(), Some("pending"));
}

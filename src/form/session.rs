//! One form visit in its WebDriver session, as a person does it: open the page, look for a
//! bot check, find the form (in the page or one of its frames), fill it at a human pace,
//! take a picture, press the button, and read what the site answers; again for each further
//! step of a multi-step form.
//!
//! Invariant: every driver call is bounded (`Session::timeout`); a CAPTCHA is never touched;
//! `before_click` is called (and must say yes) before the first click that may send anything.

use super::browser::{Browser, Session};
use super::fields::{self, Action, FieldInfo, Plan};
use super::verdict::{judge, Observation, Verdict};
use super::{FormJob, FormOutcome, FormReport, Shot};
use fantoccini::error::CmdError;
use fantoccini::Locator;
use std::future::Future;
use std::time::{Duration, Instant};

const PAGE_JS: &str = include_str!("page.js");
const CONTROLS: &str = "input, textarea, select";
const BUTTONS: &str =
    "button, input[type=submit], input[type=button], input[type=image], [role=button], a[href]";
/// Forms built by a script after load get this long to appear.
const FORM_APPEARS: Duration = Duration::from_secs(6);
/// After a click, the page is looked at this often…
const POLL: Duration = Duration::from_millis(150);
/// …and judged "settled" (the browser's own validation, a script that did nothing) after this.
const SETTLE: Duration = Duration::from_millis(1500);
/// Steps of a multi-step form, at most.
const MAX_STEPS: usize = 5;

/// Why a visit stopped before its verdict.
enum Stop {
    Verdict(FormOutcome, String),
    /// Our side: the browser or driver failed.
    Ours(String),
    /// The claim was lost before the first click: the visit is someone else's now.
    Abandoned,
}

impl From<CmdError> for Stop {
    fn from(e: CmdError) -> Self {
        classify(&e)
    }
}

/// A driver error is the site's (a navigation error, a page that takes too long) or ours.
fn classify(e: &CmdError) -> Stop {
    let text = e.to_string();
    if let Some(at) = text.find("net::ERR_") {
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        return Stop::Verdict(
            FormOutcome::Unreachable,
            format!("the site could not be reached ({name})"),
        );
    }
    if e.is_timeout() {
        return Stop::Verdict(
            FormOutcome::Unreachable,
            format!("the page did not load in time ({text})"),
        );
    }
    Stop::Ours(format!("browser: {text}"))
}

/// Runs one form visit. `before_click` is awaited once, before the first click.
pub async fn run<F, Fut>(browser: &Browser, job: &FormJob, before_click: F) -> FormReport
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut report = FormReport::default();
    let session = match browser.session().await {
        Ok(s) => s,
        Err(e) => {
            report.outcome = Some(FormOutcome::Failed);
            report.error = Some(format!("{e:#}"));
            return report;
        }
    };
    let mut visit = Visit {
        s: &session,
        job,
        report: &mut report,
        frame: None,
        filled: Vec::new(),
    };
    let ended = visit.go(before_click).await;
    match ended {
        Stop::Verdict(outcome, message) => {
            report.outcome = Some(outcome);
            report.message = Some(message);
        }
        Stop::Ours(e) => {
            report.outcome = Some(FormOutcome::Failed);
            report.error = Some(if browser.check_driver().await {
                e
            } else {
                format!("{e} (chromedriver died; restarted for the next visit)")
            });
        }
        Stop::Abandoned => report.outcome = None,
    }
    session.close().await;
    report
}

/// What a visit would type where, without typing or clicking anything: the fields found on
/// the page at `url` (or in its frames) and the plan for them. For checking a branch's form
/// before a campaign, and for the field-matching corpus (`fixtures/forms`).
#[derive(Debug, Clone, Default)]
pub struct Preview {
    /// (key, label of the field it goes in), in page order; boxes ticked as `[consent]` or
    /// `[required]`.
    pub filled: Vec<(String, String)>,
    /// Labels (or names) of the fields left empty on purpose.
    pub honeypots: Vec<String>,
    pub missing: Vec<String>,
    /// The frame holding the form, None for the page itself.
    pub frame: Option<u16>,
}

pub async fn preview(browser: &Browser, job: &FormJob) -> anyhow::Result<Preview> {
    let session = browser.session().await?;
    let mut report = FormReport::default();
    let mut visit = Visit {
        s: &session,
        job,
        report: &mut report,
        frame: None,
        filled: Vec::new(),
    };
    let found = async {
        visit.call(visit.s.client.goto(&job.url)).await?;
        let started = Instant::now();
        loop {
            if let Some(found) = visit.find_form().await? {
                return Ok::<_, Stop>(Some(found));
            }
            if started.elapsed() > FORM_APPEARS {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    .await;
    let frame = visit.frame;
    session.close().await;
    let (fields, plan) = match found {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(Preview::default()),
        Err(Stop::Verdict(_, m)) | Err(Stop::Ours(m)) => anyhow::bail!("{m}"),
        Err(Stop::Abandoned) => anyhow::bail!("abandoned"),
    };
    let label = |i: usize| {
        fields
            .iter()
            .find(|f| f.index == i)
            .map(fields::label_of)
            .unwrap_or_default()
    };
    let filled = plan
        .actions
        .iter()
        .map(|a| {
            let key = match a {
                Action::Type { key, .. }
                | Action::Select { key, .. }
                | Action::Choose { key, .. } => key.clone(),
                Action::Check { why, .. } => format!("[{why}]"),
            };
            (key, label(a.index()))
        })
        .collect();
    Ok(Preview {
        filled,
        honeypots: plan.honeypots.iter().map(|i| label(*i)).collect(),
        missing: plan.missing.clone(),
        frame,
    })
}

struct Visit<'a> {
    s: &'a Session,
    job: &'a FormJob,
    report: &'a mut FormReport,
    /// The frame holding the form (index among the page's iframes), None for the page itself.
    frame: Option<u16>,
    /// Indices of the controls filled so far (in the form's frame).
    filled: Vec<usize>,
}

impl Visit<'_> {
    /// A driver call, bounded: a driver that does not answer is a failure of ours.
    async fn call<T>(&self, f: impl Future<Output = Result<T, CmdError>>) -> Result<T, Stop> {
        match tokio::time::timeout(self.s.timeout, f).await {
            Ok(r) => r.map_err(Stop::from),
            Err(_) => Err(Stop::Ours(format!(
                "the browser did not answer within {:?}",
                self.s.timeout
            ))),
        }
    }

    async fn js<T: serde::de::DeserializeOwned>(
        &self,
        expr: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<T, Stop> {
        let script = format!("{PAGE_JS}\nreturn {expr};");
        let v = self.call(self.s.client.execute(&script, args)).await?;
        serde_json::from_value(v).map_err(|e| Stop::Ours(format!("reading the page: {e}")))
    }

    async fn go<F, Fut>(&mut self, before_click: F) -> Stop
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = bool>,
    {
        match self.steps(before_click).await {
            Ok(()) => Stop::Ours("no verdict".into()),
            Err(stop) => {
                if !matches!(stop, Stop::Ours(_)) {
                    // The result as the branch's site showed it, whatever it was.
                    self.shoot("result").await;
                }
                stop
            }
        }
    }

    /// The visit's steps; always ends in `Err(stop)` (a verdict is a stop too).
    async fn steps<F, Fut>(&mut self, before_click: F) -> Result<(), Stop>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = bool>,
    {
        self.call(self.s.client.goto(&self.job.url)).await?;
        let loaded = self.observe().await?;
        if loaded.url.starts_with("chrome-error://") || loaded.status >= 500 {
            return Err(Stop::Verdict(
                FormOutcome::Unreachable,
                describe_status(&loaded, "the form's page"),
            ));
        }
        if (400..500).contains(&loaded.status) {
            return Err(Stop::Verdict(
                FormOutcome::FormFailed,
                describe_status(&loaded, "the form's page"),
            ));
        }
        // Find the form: the page or a frame, waiting a little for one a script builds.
        let started = Instant::now();
        let (fields, plan) = loop {
            if let Some(why) = self.captcha_anywhere().await? {
                return Err(Stop::Verdict(
                    FormOutcome::FormBlocked,
                    format!("the site asks for {why}: not attempted"),
                ));
            }
            if let Some(found) = self.find_form().await? {
                break found;
            }
            if started.elapsed() > FORM_APPEARS {
                return Err(Stop::Verdict(
                    FormOutcome::FormFailed,
                    "no contact form found on the page".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        self.report.honeypots += plan.honeypots.len();
        self.fill(&fields, &plan).await?;
        self.shoot("form").await;
        if !before_click().await {
            return Err(Stop::Abandoned);
        }
        for step in 0..MAX_STEPS {
            let before = self.observe().await?;
            let button: i64 = self
                .js(
                    &format!("M.button({})", serde_json::json!(self.filled)),
                    vec![],
                )
                .await?;
            if button < 0 {
                return Err(Stop::Verdict(
                    FormOutcome::FormFailed,
                    "no button to send the form".into(),
                ));
            }
            let buttons = self
                .call(self.s.client.find_all(Locator::Css(BUTTONS)))
                .await?;
            let Some(b) = buttons.get(button as usize) else {
                return Err(Stop::Ours("the send button vanished".into()));
            };
            self.report.clicked_at.get_or_insert_with(Instant::now);
            if let Err(e) = self.call(b.click()).await {
                match e {
                    // A click the page intercepted (an overlay): press it the way a script would.
                    Stop::Ours(_) => {
                        self.call(self.s.client.execute(
                            "arguments[0].click(); return true;",
                            vec![serde_json::to_value(b).unwrap_or_default()],
                        ))
                        .await?;
                    }
                    other => return Err(other),
                }
            }
            match self.await_verdict(&before).await? {
                Verdict::NextStep => {
                    let (fields, plan) = match self.plan_here().await? {
                        Some(p) => p,
                        None => continue,
                    };
                    self.report.steps = step + 2;
                    self.report.honeypots += plan.honeypots.len();
                    self.fill(&fields, &plan).await?;
                    self.shoot("form").await;
                }
                Verdict::Submitted(message) => {
                    self.report.submitted_at = Some(Instant::now());
                    return Err(Stop::Verdict(FormOutcome::Submitted, message));
                }
                Verdict::Failed(m) => return Err(Stop::Verdict(FormOutcome::FormFailed, m)),
                Verdict::Blocked(m) => return Err(Stop::Verdict(FormOutcome::FormBlocked, m)),
                Verdict::Unreachable(m) => return Err(Stop::Verdict(FormOutcome::Unreachable, m)),
                Verdict::Pending => {
                    return Err(Stop::Verdict(
                        FormOutcome::FormFailed,
                        format!(
                            "no confirmation within {:?} of sending",
                            self.job.page_timeout
                        ),
                    ))
                }
            }
        }
        Err(Stop::Verdict(
            FormOutcome::FormFailed,
            format!("still asking for more after {MAX_STEPS} steps"),
        ))
    }

    /// Looks at the page after a click until it says something, bounded by the page timeout.
    async fn await_verdict(&mut self, before: &Observation) -> Result<Verdict, Stop> {
        let clicked = Instant::now();
        loop {
            let after = match self.observe().await {
                Ok(o) => o,
                // The frame holding the form navigated away with the whole page: look at the page.
                Err(Stop::Ours(_)) if self.frame.is_some() => {
                    self.frame = None;
                    self.call(self.s.client.enter_parent_frame()).await?;
                    self.observe().await?
                }
                Err(e) => return Err(e),
            };
            let settled = clicked.elapsed() >= SETTLE;
            let v = judge(before, &after, settled);
            if v != Verdict::Pending {
                return Ok(v);
            }
            if clicked.elapsed() >= self.job.page_timeout {
                return Ok(Verdict::Pending);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn observe(&self) -> Result<Observation, Stop> {
        self.js(
            &format!("M.observe({})", serde_json::json!(self.filled)),
            vec![],
        )
        .await
    }

    /// A CAPTCHA in the page or any of its frames.
    async fn captcha_anywhere(&mut self) -> Result<Option<String>, Stop> {
        self.leave_frames().await?;
        let top: String = self.js("M.captcha()", vec![]).await?;
        if !top.is_empty() {
            return Ok(Some(top));
        }
        let frames = self.frame_count().await?;
        for i in 0..frames {
            if self.call(self.s.client.enter_frame(i)).await.is_err() {
                continue;
            }
            let found: Result<String, Stop> = self.js("M.captcha()", vec![]).await;
            self.call(self.s.client.enter_parent_frame()).await?;
            if let Ok(f) = found {
                if !f.is_empty() {
                    return Ok(Some(f));
                }
            }
        }
        Ok(None)
    }

    async fn leave_frames(&mut self) -> Result<(), Stop> {
        if self.frame.take().is_some() {
            self.call(self.s.client.enter_parent_frame()).await?;
        }
        Ok(())
    }

    async fn frame_count(&self) -> Result<u16, Stop> {
        let n: u64 = self.js("window.frames.length", vec![]).await?;
        Ok(n.min(16) as u16)
    }

    /// The document (page or frame) whose plan fills most fields; the session is left in it.
    async fn find_form(&mut self) -> Result<Option<(Vec<FieldInfo>, Plan)>, Stop> {
        self.leave_frames().await?;
        let mut best: Option<(Option<u16>, Vec<FieldInfo>, Plan)> = None;
        let top = self.plan_here().await?;
        if let Some((f, p)) = top {
            best = Some((None, f, p));
        }
        let frames = self.frame_count().await?;
        for i in 0..frames {
            if self.call(self.s.client.enter_frame(i)).await.is_err() {
                continue;
            }
            let here = self.plan_here().await;
            self.call(self.s.client.enter_parent_frame()).await?;
            if let Ok(Some((f, p))) = here {
                if best
                    .as_ref()
                    .is_none_or(|(_, _, b)| p.actions.len() > b.actions.len())
                {
                    best = Some((Some(i), f, p));
                }
            }
        }
        let Some((frame, f, p)) = best else {
            return Ok(None);
        };
        if let Some(i) = frame {
            self.call(self.s.client.enter_frame(i)).await?;
            self.frame = Some(i);
        }
        Ok(Some((f, p)))
    }

    /// The fields of the current document and what to do to them; None when nothing there
    /// asks for a text (no form, or only a search box).
    async fn plan_here(&self) -> Result<Option<(Vec<FieldInfo>, Plan)>, Stop> {
        let fields: Vec<FieldInfo> = self.js("M.describe()", vec![]).await?;
        let plan = fields::plan(&fields, &self.job.values);
        let texts = plan
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Type { .. }))
            .count();
        Ok((texts > 0 || plan.actions.len() > 1).then_some((fields, plan)))
    }

    /// Does what the plan says, field by field, at the scenario's typing pace.
    async fn fill(&mut self, fields: &[FieldInfo], plan: &Plan) -> Result<(), Stop> {
        let elements = self
            .call(self.s.client.find_all(Locator::Css(CONTROLS)))
            .await?;
        for action in &plan.actions {
            let index = action.index();
            let Some(el) = elements.get(index) else {
                continue;
            };
            let info = fields.iter().find(|f| f.index == index);
            let label = info.map(fields::label_of).unwrap_or_default();
            let done = match action {
                Action::Type { value, key, .. } => {
                    let multiline = info.is_some_and(|f| f.tag == "textarea");
                    let value = if multiline {
                        value.replace("\r\n", "\n")
                    } else {
                        value.replace(['\r', '\n'], " ")
                    };
                    // Characters outside the BMP cannot be typed by chromedriver.
                    let value: String = value.chars().filter(|c| (*c as u32) < 0x10000).collect();
                    let _ = self.call(el.click()).await;
                    if info.is_some_and(|f| !f.value.is_empty()) {
                        self.call(el.clear()).await?;
                    }
                    self.type_text(el, &value).await?;
                    self.report.filled.push((key.clone(), label.clone()));
                    true
                }
                Action::Select { option, key, .. } => {
                    self.call(el.select_by_index(*option)).await?;
                    self.report.filled.push((key.clone(), label.clone()));
                    true
                }
                Action::Check { why, .. } => {
                    self.click_box(el).await?;
                    self.report.filled.push((format!("[{why}]"), label.clone()));
                    true
                }
                Action::Choose { key, .. } => {
                    self.click_box(el).await?;
                    self.report.filled.push((key.clone(), label.clone()));
                    true
                }
            };
            if done {
                self.filled.push(index);
            }
        }
        self.report.missing.extend(plan.missing.iter().cloned());
        Ok(())
    }

    async fn type_text(&self, el: &fantoccini::elements::Element, value: &str) -> Result<(), Stop> {
        let delay = self.job.typing_delay;
        if delay.is_zero() {
            return self.call(el.send_keys(value)).await;
        }
        // A person types: one key at a time, with a little irregularity.
        let mut buf = [0u8; 4];
        for (i, c) in value.chars().enumerate() {
            self.call(el.send_keys(c.encode_utf8(&mut buf))).await?;
            let jitter = (i as u64 * 7919) % 5; // 0..4 tenths
            let pause = delay.mul_f64(0.8 + jitter as f64 / 10.0);
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    /// Clicks a check box or radio button, or its label when the box itself is styled away.
    async fn click_box(&self, el: &fantoccini::elements::Element) -> Result<(), Stop> {
        if self.call(el.click()).await.is_ok() {
            return Ok(());
        }
        let arg = vec![serde_json::to_value(el).unwrap_or_default()];
        self.call(self.s.client.execute(
            "const e = arguments[0]; const l = e.labels && e.labels[0]; (l || e).click(); return e.checked;",
            arg,
        ))
        .await?;
        Ok(())
    }

    /// A screenshot of the page as it is now, kept as evidence (never fails the visit).
    async fn shoot(&mut self, kind: &str) {
        let Some(dir) = &self.job.screenshot_dir else {
            return;
        };
        let png = match self.call(self.s.client.screenshot()).await {
            Ok(p) => p,
            Err(_) => return,
        };
        let n = self.report.screenshots.len();
        let path = dir.join(format!("{}.{n}-{kind}.png", self.job.name));
        if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, &png)) {
            tracing::warn!(path = %path.display(), "screenshot not kept: {e}");
            return;
        }
        self.report.screenshots.push(Shot {
            kind: kind.to_owned(),
            path,
            taken: Instant::now(),
        });
    }
}

fn describe_status(o: &Observation, what: &str) -> String {
    let text: String = o.text.chars().take(160).collect();
    if o.url.starts_with("chrome-error://") {
        format!("{what} could not be loaded: {text}")
    } else {
        format!(
            "HTTP {} for {what}: {}",
            o.status,
            if text.is_empty() { &o.title } else { &text }
        )
    }
}

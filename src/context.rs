//! What every step of a visit needs: the validated config, the store, the one clock, and the
//! adapters (SMTP mailer, SIP agent) built once per process on first use.

use crate::call::CallAgent;
use crate::clock::Clock;
use crate::config::Config;
use crate::email::send::Mailer;
use crate::store::Store;
use anyhow::{anyhow, Context as _, Result};
use std::sync::Arc;
use tokio::sync::OnceCell;

pub struct Context {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Clock,
    /// Names this process in leases and claims.
    pub instance: String,
    mailer: OnceCell<Mailer>,
    call_agent: OnceCell<CallAgent>,
    /// The browser of form visits; its driver starts on the first form visit.
    browser: std::sync::OnceLock<crate::form::Browser>,
    /// The SMTP server as all of this process's visits see it: one line when it goes away and
    /// one when it is back, however many visits meet the outage.
    pub smtp_outage: std::sync::Mutex<crate::outage::Outage>,
}

impl Context {
    /// Phase two of start-up: opens the store (migrating it) and adds imported businesses.
    pub async fn build(mut config: Config, clock: Clock) -> Result<Arc<Self>> {
        let store = Store::connect(&config.storage.url).await?;
        config.merge_imported(store.imported_businesses().await?);
        Ok(Arc::new(Self::with_store(config, store, clock)))
    }

    /// Both phases for a command that works on the store: the store named by the file is
    /// opened first, so the configuration is validated knowing the businesses imported into
    /// it (a schedule may target them), exactly as `check` validates it.
    pub async fn open(path: &std::path::Path, clock: Clock) -> Result<Arc<Self>> {
        Self::open_with(path, clock, Vec::new()).await
    }

    /// `open`, with businesses about to be imported known too (`mystery import`: a schedule
    /// may already target the branches of the list being imported).
    pub async fn open_with(
        path: &std::path::Path,
        clock: Clock,
        incoming: Vec<crate::config::Business>,
    ) -> Result<Arc<Self>> {
        let Some(url) = crate::config::storage_url(path) else {
            // Unreadable file or `[storage]`: `load` says why, with the line.
            return Self::build(crate::config::load_for_run(path)?, clock).await;
        };
        let store = Store::connect(&url).await?;
        let mut imported = store.imported().await?;
        for b in incoming {
            imported.archived.remove(&b.id);
            if !imported.businesses.iter().any(|i| i.id == b.id) {
                imported.businesses.push(b);
            }
        }
        let config = crate::config::load_for_run_with(path, imported)?;
        Ok(Arc::new(Self::with_store(config, store, clock)))
    }

    pub fn with_store(config: Config, store: Store, clock: Clock) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        Self {
            store,
            clock,
            instance: format!(
                "{host}:{}:{}",
                std::process::id(),
                &uuid::Uuid::new_v4().to_string()[..8]
            ),
            smtp_outage: std::sync::Mutex::new(crate::outage::Outage::new(match &config.smtp {
                Some(s) => format!("the SMTP server {}:{}", s.host, s.port),
                None => "the SMTP server".to_owned(),
            })),
            config: Arc::new(config),
            mailer: OnceCell::new(),
            call_agent: OnceCell::new(),
            browser: std::sync::OnceLock::new(),
        }
    }

    pub async fn mailer(&self) -> Result<&Mailer> {
        self.mailer
            .get_or_try_init(|| async {
                let smtp = self
                    .config
                    .smtp
                    .as_ref()
                    .ok_or_else(|| anyhow!("no [smtp] section in the configuration"))?;
                Ok(Mailer::new(smtp)?)
            })
            .await
    }

    /// The SIP agent binds `[sip] bind` on first use: only a process that places calls does.
    pub async fn call_agent(&self) -> Result<&CallAgent> {
        self.call_agent
            .get_or_try_init(|| async {
                let sip = self
                    .config
                    .sip
                    .clone()
                    .ok_or_else(|| anyhow!("no [sip] section in the configuration"))?;
                let bind = sip.bind;
                CallAgent::bind(sip, self.clock.clone())
                    .await
                    .with_context(|| format!("binding SIP on {bind}"))
            })
            .await
    }

    /// Counts a failed exchange with a peer (`smtp`, `imap`, `sip`) for `/metrics`. Never
    /// fails the caller: a store that cannot count it is already said elsewhere.
    pub async fn count_protocol_error(&self, kind: &str) {
        if let Err(e) = self.store.count_protocol_error(kind, self.now_ms()).await {
            tracing::debug!("counting a {kind} error: {e:#}");
        }
    }

    /// The shared browser of form visits (`[browser]`); nothing runs until a visit needs it.
    pub fn browser(&self) -> &crate::form::Browser {
        self.browser.get_or_init(|| {
            crate::form::Browser::new(crate::form::BrowserSettings::from(&self.config.browser))
        })
    }

    /// Stops the browser's driver and its Chromium processes, if any were started.
    pub async fn stop_browser(&self) {
        if let Some(b) = self.browser.get() {
            b.shutdown().await;
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }
}

//! E-mail over SMTP with `lettre`: STARTTLS (required), TLS from the first byte, or plain (a local relay), with
//! optional authentication.

use std::time::{Duration, Instant};

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{SmtpSettings, SmtpTls};

/// How one e-mail ended.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The SMTP reply code (250 when accepted).
    pub code: Option<u16>,
    pub error: Option<String>,
    pub elapsed: Duration,
}

/// Checks the settings can make a sender (the `from` address parses, the host is a host).
pub fn check(s: &SmtpSettings) -> Result<(), String> {
    s.from.parse::<lettre::message::Mailbox>().map_err(|e| format!("smtp.from `{}`: {e}", s.from))?;
    transport(s, Duration::from_secs(1)).map(|_| ())
}

fn transport(s: &SmtpSettings, timeout: Duration) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let builder = match s.tls {
        SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host),
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host),
        SmtpTls::None => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)),
    }
    .map_err(|e| format!("smtp.host `{}`: {e}", s.host))?;
    let mut builder = builder.port(s.port).timeout(Some(timeout));
    if let (Some(u), Some(p)) = (&s.username, &s.password) {
        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
    }
    Ok(builder.build())
}

/// Sends one plain-text e-mail.
pub async fn send(s: &SmtpSettings, to: &str, subject: &str, text: &str, timeout: Duration) -> Sent {
    let started = Instant::now();
    let fail = |e: String| Sent { code: None, error: Some(e), elapsed: started.elapsed() };
    let message = (|| {
        Message::builder()
            .from(s.from.parse().map_err(|e| format!("smtp.from: {e}"))?)
            .to(to.parse().map_err(|e| format!("recipient {to}: {e}"))?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text.to_owned())
            .map_err(|e| e.to_string())
    })();
    let message = match message {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let mailer = match transport(s, timeout) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    match mailer.send(message).await {
        Ok(r) => Sent { code: Some(u16::from(r.code())), error: None, elapsed: started.elapsed() },
        Err(e) => {
            Sent { code: e.status().map(u16::from), error: Some(format!("SMTP: {e}")), elapsed: started.elapsed() }
        }
    }
}

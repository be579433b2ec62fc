//! Conformance checks of [`NotifyStore`]: reminders once per (key, kind), digests sent by one node, outbox claims
//! that one node holds at a time and that pass on when their lease ends, webhook endpoints, and the key scan.

use atna_domain::{CredentialId, ReminderKind, UserId};

use super::{new_key, user, T0};
use crate::*;

fn reminder(user: UserId, key: CredentialId, kind: ReminderKind, at: i64) -> NewReminder {
    NewReminder { user, kind, key_id: key, key_name: "billing-26_11_2026-14_05".into(), at }
}

fn delivery(id: &str, channel: Channel, user: Option<UserId>) -> NewDelivery {
    NewDelivery { id: id.into(), channel, user, body: format!("{{\"id\":\"{id}\"}}") }
}

pub async fn reminders_are_recorded_once_and_digested_once(s: &dyn Store) {
    let alice = user(s, "alice@example.com").await;
    let (k, _) = new_key(alice.id, "billing", T0);
    let r = reminder(alice.id, k.id, ReminderKind::RotationDue, T0 + 10);
    assert!(s.add_reminder(&r, None).await.unwrap());
    assert!(!s.add_reminder(&r, None).await.unwrap(), "each (key, kind) is reminded once");
    let other = reminder(alice.id, k.id, ReminderKind::ExpiresIn7Days, T0 + 11);
    assert!(s.add_reminder(&other, None).await.unwrap(), "another kind for the same key is another reminder");
    let pending = s.pending_reminders(alice.id).await.unwrap();
    assert_eq!(
        pending.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [ReminderKind::RotationDue, ReminderKind::ExpiresIn7Days]
    );
    assert_eq!(s.digest_due(T0 + 100, 10).await.unwrap(), [alice.id]);

    let ids: Vec<i64> = pending.iter().map(|r| r.id).collect();
    let d = [delivery("msg_a", Channel::Email, Some(alice.id)), delivery("msg_b", Channel::Webhook, None)];
    assert!(s.send_digest(alice.id, &ids, "m1", T0 + 100, &d).await.unwrap());
    // A second node that read the same pending reminders loses the race and writes nothing.
    let d2 = [delivery("msg_c", Channel::Email, Some(alice.id))];
    assert!(!s.send_digest(alice.id, &ids, "m2", T0 + 101, &d2).await.unwrap());
    assert!(s.deliveries("m2").await.unwrap().is_empty());
    assert!(s.pending_reminders(alice.id).await.unwrap().is_empty());
    assert!(s.digest_due(T0 + 100, 10).await.unwrap().is_empty());

    // A new reminder waits for the next digest: not due until the last digest is older than the interval.
    let (k2, _) = new_key(alice.id, "crm", T0);
    assert!(s.add_reminder(&reminder(alice.id, k2.id, ReminderKind::Unused, T0 + 200), None).await.unwrap());
    assert!(s.digest_due(T0 + 100, 10).await.unwrap().is_empty(), "a digest went out at T0 + 100");
    assert_eq!(s.digest_due(T0 + 101, 10).await.unwrap(), [alice.id]);

    let shown = s.reminders(alice.id, 10).await.unwrap();
    assert_eq!(shown.len(), 3);
    assert_eq!(shown[0].0.kind, ReminderKind::Unused, "newest first");
    assert!(shown[0].1.is_empty() && shown[0].0.sent_at.is_none());
    let sent = &shown[2];
    assert_eq!((sent.0.sent_at, sent.0.message.as_deref()), (Some(T0 + 100), Some("m1")));
    assert_eq!(
        sent.1.iter().map(|d| (d.channel, d.user)).collect::<Vec<_>>(),
        [(Channel::Email, Some(alice.id)), (Channel::Webhook, None)]
    );
}

pub async fn urgent_reminders_go_to_the_outbox_at_once(s: &dyn Store) {
    let alice = user(s, "alice@example.com").await;
    let (k, _) = new_key(alice.id, "billing", T0);
    let r = reminder(alice.id, k.id, ReminderKind::Leaked, T0);
    let d = [delivery("msg_leak", Channel::Webhook, Some(alice.id))];
    assert!(s.add_reminder(&r, Some(("m-leak", &d))).await.unwrap());
    assert!(!s.add_reminder(&r, Some(("m-leak-2", &d))).await.unwrap(), "once, and no second outbox entry");
    assert!(s.pending_reminders(alice.id).await.unwrap().is_empty());
    assert!(s.digest_due(T0 + 1, 10).await.unwrap().is_empty());
    let out = s.deliveries("m-leak").await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].id.as_str(), out[0].next_attempt_at, out[0].attempts), ("msg_leak", T0, 0));
    assert_eq!(out[0].body, "{\"id\":\"msg_leak\"}");
}

pub async fn outbox_claims_are_exclusive_and_leases_pass_on(s: &dyn Store) {
    let alice = user(s, "alice@example.com").await;
    let (k, _) = new_key(alice.id, "billing", T0);
    let d = [delivery("msg_1", Channel::Webhook, Some(alice.id))];
    s.add_reminder(&reminder(alice.id, k.id, ReminderKind::Leaked, T0), Some(("m", &d))).await.unwrap();

    assert!(s.claim_deliveries("a", T0 - 1, T0 + 1000, 10).await.unwrap().is_empty(), "not due yet");
    let got = s.claim_deliveries("a", T0, T0 + 1000, 10).await.unwrap();
    assert_eq!(got.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["msg_1"]);
    assert!(s.claim_deliveries("b", T0 + 999, T0 + 2000, 10).await.unwrap().is_empty(), "a holds the lease");
    let fail = Attempt {
        delivered: false,
        status: Some(500),
        error: Some("HTTP 500".into()),
        duration_ms: 3,
        retry_at: Some(T0 + 5000),
    };
    assert!(!s.finish_delivery("msg_1", "b", &fail, T0 + 10).await.unwrap(), "b holds no claim");
    assert!(s.finish_delivery("msg_1", "a", &fail, T0 + 10).await.unwrap());
    assert!(s.claim_deliveries("b", T0 + 4999, T0 + 9000, 10).await.unwrap().is_empty(), "backing off");

    // b claims the retry and dies: once its lease passes, c takes the same entry, with the same ID.
    let retry = s.claim_deliveries("b", T0 + 5000, T0 + 6000, 10).await.unwrap();
    assert_eq!((retry[0].id.as_str(), retry[0].attempts), ("msg_1", 1));
    assert!(s.claim_deliveries("c", T0 + 5999, T0 + 9000, 10).await.unwrap().is_empty());
    let taken = s.claim_deliveries("c", T0 + 6000, T0 + 9000, 10).await.unwrap();
    assert_eq!(taken[0].id, "msg_1");
    let ok = Attempt { delivered: true, status: Some(204), error: None, duration_ms: 7, retry_at: None };
    assert!(!s.finish_delivery("msg_1", "b", &ok, T0 + 6001).await.unwrap(), "b's claim was lost");
    assert!(s.finish_delivery("msg_1", "c", &ok, T0 + 6001).await.unwrap());
    assert!(s.claim_deliveries("a", T0 + 99_999, T0 + 100_000, 10).await.unwrap().is_empty(), "delivered: done");
    let done = &s.deliveries("m").await.unwrap()[0];
    assert_eq!((done.delivered_at, done.attempts, done.last_status), (Some(T0 + 6001), 2, Some(204)));
    assert_eq!((done.failed_at, done.last_duration_ms), (None, Some(7)));

    // Giving up: no retry time.
    let (k2, _) = new_key(alice.id, "crm", T0);
    let d2 = [delivery("msg_2", Channel::Email, Some(alice.id))];
    s.add_reminder(&reminder(alice.id, k2.id, ReminderKind::Leaked, T0), Some(("m2", &d2))).await.unwrap();
    s.claim_deliveries("a", T0, T0 + 10, 10).await.unwrap();
    let last =
        Attempt { delivered: false, status: None, error: Some("refused".into()), duration_ms: 1, retry_at: None };
    assert!(s.finish_delivery("msg_2", "a", &last, T0 + 5).await.unwrap());
    let gave_up = &s.deliveries("m2").await.unwrap()[0];
    assert_eq!((gave_up.failed_at, gave_up.last_error.as_deref()), (Some(T0 + 5), Some("refused")));
    assert!(s.claim_deliveries("a", T0 + 99_999, T0 + 100_000, 10).await.unwrap().is_empty());
}

pub async fn webhooks_are_per_user_and_per_installation(s: &dyn Store) {
    let alice = user(s, "alice@example.com").await;
    assert!(s.webhook(Some(alice.id)).await.unwrap().is_none());
    let mine = Webhook {
        owner: Some(alice.id),
        url: "https://a.example/hook".into(),
        secret: "whsec_AAAA".into(),
        created_at: T0,
    };
    s.set_webhook(&mine).await.unwrap();
    assert!(s.webhook(None).await.unwrap().is_none(), "a user's webhook is not the installation's");
    let all =
        Webhook { owner: None, url: "https://ops.example/hook".into(), secret: "whsec_BBBB".into(), created_at: T0 };
    s.set_webhook(&all).await.unwrap();
    let replaced = Webhook { url: "https://b.example/hook".into(), secret: "whsec_CCCC".into(), ..mine.clone() };
    s.set_webhook(&replaced).await.unwrap();
    assert_eq!(s.webhook(Some(alice.id)).await.unwrap(), Some(replaced));
    assert_eq!(s.webhook(None).await.unwrap(), Some(all.clone()));
    assert!(!format!("{all:?}").contains("BBBB"), "Debug hides the secret");
    assert!(s.delete_webhook(Some(alice.id)).await.unwrap());
    assert!(!s.delete_webhook(Some(alice.id)).await.unwrap());
    assert!(s.webhook(None).await.unwrap().is_some());
}

pub async fn the_scan_pages_through_live_keys_of_enabled_users(s: &dyn Store) {
    let alice = user(s, "alice@example.com").await;
    let bob = user(s, "bob@example.com").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (k, _) = new_key(alice.id, &format!("k{i}"), T0);
        ids.push(s.insert_key(k).await.unwrap().id);
    }
    let (b, _) = new_key(bob.id, "bobs", T0);
    s.insert_key(b).await.unwrap();
    s.set_user_disabled(bob.id, true, T0).await.unwrap();
    s.revoke_key(None, &ids[4], &Actor::Operator.into(), T0).await.unwrap();
    let mut want: Vec<CredentialId> = ids[..4].to_vec();
    want.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.scan_keys(after.as_ref(), 3).await.unwrap();
        seen.extend(page.iter().map(|k| k.id));
        match page.last() {
            Some(k) if page.len() == 3 => after = Some(k.id),
            _ => break,
        }
    }
    assert_eq!(seen, want, "by ascending ID, without revoked keys or a disabled user's");
}

//! The kinds of reminder atna sends a key's owner, and which of them cannot wait for the daily digest.

/// What a reminder is about. Each (key, kind) is reminded once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReminderKind {
    /// The key expires within 7 days.
    ExpiresIn7Days,
    /// The key expires within a day.
    ExpiresIn1Day,
    /// The key reached the policy's rotation-due age.
    RotationDue,
    /// The key has been unused for the policy's unused age.
    Unused,
    /// The policy disabled the key because it was unused.
    AutoDisabled,
    /// The key was deleted.
    Deleted,
    /// The key was rolled: a successor replaces it.
    Rolled,
    /// The key was reported leaked (found in public).
    Leaked,
}

impl ReminderKind {
    /// Every kind.
    pub const ALL: [ReminderKind; 8] = [
        Self::ExpiresIn7Days,
        Self::ExpiresIn1Day,
        Self::RotationDue,
        Self::Unused,
        Self::AutoDisabled,
        Self::Deleted,
        Self::Rolled,
        Self::Leaked,
    ];

    /// The stored form, also the webhook event type after `key.`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExpiresIn7Days => "expires_in_7_days",
            Self::ExpiresIn1Day => "expires_in_1_day",
            Self::RotationDue => "rotation_due",
            Self::Unused => "unused",
            Self::AutoDisabled => "auto_disabled",
            Self::Deleted => "deleted",
            Self::Rolled => "rolled",
            Self::Leaked => "leaked",
        }
    }

    /// Reads the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The webhook event type (`key.expires_in_7_days`, …).
    pub fn event_type(self) -> String {
        format!("key.{}", self.as_str())
    }

    /// Sent at once instead of in the daily digest: a leaked key or one the policy disabled needs action now.
    pub fn immediate(self) -> bool {
        matches!(self, Self::Leaked | Self::AutoDisabled)
    }

    /// A sentence about key `name`, for e-mails and the dashboard.
    pub fn sentence(self, name: &str) -> String {
        match self {
            Self::ExpiresIn7Days => {
                format!("Your API key {name} expires within 7 days: roll it before it stops working.")
            }
            Self::ExpiresIn1Day => format!("Your API key {name} expires within a day: roll it now."),
            Self::RotationDue => format!("Your API key {name} is due for rotation: roll it."),
            Self::Unused => format!("Your API key {name} has not been used for a while: consider deleting it."),
            Self::AutoDisabled => format!("Your API key {name} was disabled automatically because it was unused."),
            Self::Deleted => format!("Your API key {name} was deleted: it no longer works."),
            Self::Rolled => format!("Your API key {name} was rolled: switch to its successor before the overlap ends."),
            Self::Leaked => format!("Your API key {name} was reported leaked: roll or delete it now."),
        }
    }

    /// Whether the key still exists after this, so the reminder can link to its Roll page (else to nothing).
    pub fn key_still_live(self) -> bool {
        !matches!(self, Self::Deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_only_urgent_ones_are_immediate() {
        for k in ReminderKind::ALL {
            assert_eq!(ReminderKind::parse(k.as_str()), Some(k));
        }
        let now: Vec<_> = ReminderKind::ALL.into_iter().filter(|k| k.immediate()).collect();
        assert_eq!(now, [ReminderKind::AutoDisabled, ReminderKind::Leaked]);
        assert_eq!(ReminderKind::RotationDue.event_type(), "key.rotation_due");
    }
}

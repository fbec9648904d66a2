//! The grants claim: parsed from the wire's [`GrantsRequest`] into [`Grants`], whose fields are private and
//! already valid, and which serialize to exactly the payload Twilio's helper libraries emit: a field appears only
//! when set, an empty grant is `{}`.

use serde::Serialize;
use serde_json::{Map, Value};

use super::domain::MAX_VIDEO_IDENTITY_CHARS;
pub use super::domain::{Identity, Region};
use super::sid::{Sid, SidKind};
pub use super::wire::{GrantsRequest, MintRequest};
use crate::error::ApiError;

/// The `grants` claim, ready to serialize.
#[derive(Debug, Clone, Serialize)]
pub struct Grants {
    identity: Identity,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat: Option<ChatGrant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video: Option<VideoGrant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    voice: Option<VoiceGrant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_sync: Option<SyncGrant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_router: Option<TaskRouterGrant>,
    #[serde(skip_serializing_if = "Option::is_none")]
    player: Option<Map<String, Value>>,
}

impl Grants {
    /// The identity the grants are for.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
}

#[derive(Debug, Clone, Serialize)]
struct ChatGrant {
    #[serde(skip_serializing_if = "Option::is_none")]
    service_sid: Option<Sid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_role_sid: Option<Sid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push_credential_sid: Option<Sid>,
}

#[derive(Debug, Clone, Serialize)]
struct VideoGrant {
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct VoiceGrant {
    #[serde(skip_serializing_if = "Option::is_none")]
    incoming: Option<VoiceIncoming>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outgoing: Option<VoiceOutgoing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    push_credential_sid: Option<Sid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct VoiceIncoming {
    allow: bool,
}

#[derive(Debug, Clone, Serialize)]
struct VoiceOutgoing {
    application_sid: Sid,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Serialize)]
struct SyncGrant {
    #[serde(skip_serializing_if = "Option::is_none")]
    service_sid: Option<Sid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct TaskRouterGrant {
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace_sid: Option<Sid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    worker_sid: Option<Sid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

/// What the account contributes when the caller leaves a field out.
#[derive(Debug, Clone, Default)]
pub struct GrantDefaults {
    /// Chat service used when a chat grant names none.
    pub chat_service_sid: Option<Sid>,
}

fn sid(field: &str, value: Option<String>, kind: SidKind) -> Result<Option<Sid>, ApiError> {
    value
        .map(|v| {
            Sid::parse(&v, kind)
                .map_err(|e| ApiError::invalid("invalid_grant", format!("{field} {e}")))
        })
        .transpose()
}

fn text(field: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) => {
            Err(ApiError::invalid(
                "invalid_grant",
                format!("{field} must be 1 to {max} characters without control characters"),
            ))
        }
        other => Ok(other),
    }
}

impl Grants {
    /// Parses the requested grants for `identity`, applying the account's defaults and each product's identity
    /// rules (Video: at most 128 characters; Voice: letters, digits and `_` only).
    pub fn parse(
        identity: Identity,
        request: GrantsRequest,
        defaults: &GrantDefaults,
    ) -> Result<Self, ApiError> {
        let chat = request
            .chat
            .map(|c| -> Result<ChatGrant, ApiError> {
                Ok(ChatGrant {
                    service_sid: sid(
                        "grants.chat.service_sid",
                        c.service_sid,
                        SidKind::ChatService,
                    )?
                    .or_else(|| defaults.chat_service_sid.clone()),
                    endpoint_id: text("grants.chat.endpoint_id", c.endpoint_id, 256)?,
                    deployment_role_sid: sid(
                        "grants.chat.deployment_role_sid",
                        c.deployment_role_sid,
                        SidKind::Role,
                    )?,
                    push_credential_sid: sid(
                        "grants.chat.push_credential_sid",
                        c.push_credential_sid,
                        SidKind::Credential,
                    )?,
                })
            })
            .transpose()?;
        let video = request
            .video
            .map(|v| -> Result<VideoGrant, ApiError> {
                if identity.as_str().chars().count() > MAX_VIDEO_IDENTITY_CHARS {
                    return Err(ApiError::invalid("invalid_identity", format!(
                        "identity must be at most {MAX_VIDEO_IDENTITY_CHARS} characters for a video grant"
                    )));
                }
                Ok(VideoGrant {
                    room: text("grants.video.room", v.room, 128)?,
                })
            })
            .transpose()?;
        let voice = request
            .voice
            .map(|v| -> Result<VoiceGrant, ApiError> {
                if !identity.as_str().chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(ApiError::invalid("invalid_identity", 
                        "identity must contain only letters, digits and '_' for a voice grant".to_owned(),
                    ));
                }
                let outgoing = match v.outgoing {
                    None => None,
                    Some(o) => match sid("grants.voice.outgoing.application_sid", o.application_sid, SidKind::Application)? {
                        Some(application_sid) => Some(VoiceOutgoing {
                            application_sid,
                            // Twilio's libraries drop empty params; so do we, to mint the same payload.
                            params: o.params.filter(|p| !p.is_empty()),
                        }),
                        None if o.params.is_some() => {
                            return Err(ApiError::invalid(
                                "invalid_grant",
                                "grants.voice.outgoing.params requires grants.voice.outgoing.application_sid",
                            ))
                        }
                        None => None,
                    },
                };
                Ok(VoiceGrant {
                    incoming: v
                        .incoming
                        .and_then(|i| i.allow)
                        .filter(|allow| *allow)
                        .map(|allow| VoiceIncoming { allow }),
                    outgoing,
                    push_credential_sid: sid(
                        "grants.voice.push_credential_sid",
                        v.push_credential_sid,
                        SidKind::Credential,
                    )?,
                    endpoint_id: text("grants.voice.endpoint_id", v.endpoint_id, 256)?,
                })
            })
            .transpose()?;
        let data_sync = request
            .data_sync
            .map(|s| -> Result<SyncGrant, ApiError> {
                Ok(SyncGrant {
                    service_sid: sid(
                        "grants.data_sync.service_sid",
                        s.service_sid,
                        SidKind::SyncService,
                    )?,
                    endpoint_id: text("grants.data_sync.endpoint_id", s.endpoint_id, 256)?,
                })
            })
            .transpose()?;
        let task_router = request
            .task_router
            .map(|t| -> Result<TaskRouterGrant, ApiError> {
                Ok(TaskRouterGrant {
                    workspace_sid: sid(
                        "grants.task_router.workspace_sid",
                        t.workspace_sid,
                        SidKind::Workspace,
                    )?,
                    worker_sid: sid(
                        "grants.task_router.worker_sid",
                        t.worker_sid,
                        SidKind::Worker,
                    )?,
                    role: text("grants.task_router.role", t.role, 64)?,
                })
            })
            .transpose()?;
        Ok(Self {
            identity,
            chat,
            video,
            voice,
            data_sync,
            task_router,
            player: request.player,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(s: &str) -> Identity {
        Identity::try_from(Some(s.to_owned())).expect("valid identity")
    }

    #[test]
    fn identity_rules() {
        assert!(Identity::try_from(None).is_err());
        assert!(Identity::try_from(Some(String::new())).is_err());
        assert!(Identity::try_from(Some("a\u{7}b".to_owned())).is_err());
        assert!(
            Identity::try_from(Some("é".repeat(256))).is_ok(),
            "256 characters, not bytes"
        );
        assert!(Identity::try_from(Some("x".repeat(257))).is_err());
    }

    #[test]
    fn grants_serialize_only_fields_that_are_set() {
        let request: GrantsRequest = serde_json::from_value(serde_json::json!({
            "chat": {},
            "video": {"room": "DailyStandup"},
            "voice": {"incoming": {"allow": false}, "outgoing": {"application_sid": "AP0123456789abcdef0123456789abcdef"}}
        }))
        .expect("wire");
        let grants =
            Grants::parse(identity("alice"), request, &GrantDefaults::default()).expect("valid");
        assert_eq!(
            serde_json::to_value(&grants).expect("json"),
            serde_json::json!({
                "identity": "alice",
                "chat": {},
                "video": {"room": "DailyStandup"},
                "voice": {"outgoing": {"application_sid": "AP0123456789abcdef0123456789abcdef"}}
            })
        );
    }

    #[test]
    fn chat_service_defaults_to_the_account_setting() {
        let defaults = GrantDefaults {
            chat_service_sid: Some(
                Sid::parse("IS0123456789abcdef0123456789abcdef", SidKind::ChatService)
                    .expect("sid"),
            ),
        };
        let request: GrantsRequest =
            serde_json::from_value(serde_json::json!({"chat": {}})).expect("wire");
        let grants = Grants::parse(identity("alice"), request, &defaults).expect("valid");
        assert_eq!(
            serde_json::to_value(&grants).expect("json")["chat"]["service_sid"],
            "IS0123456789abcdef0123456789abcdef"
        );
    }

    #[test]
    fn region_format() {
        assert!(Region::try_from("ie1").is_ok());
        assert!(Region::try_from("IE1").is_err());
        assert!(Region::try_from("1ie").is_err());
        assert!(Region::try_from("x").is_err());
    }
}

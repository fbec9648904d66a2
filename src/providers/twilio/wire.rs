//! The mint request on the wire: what the caller sent, with Twilio's JSON field names and unknown fields
//! refused. `Grants::parse` and the domain types' `TryFrom` turn it into valid values.

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// `POST /twilio/v1/tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// The user the token is for (required; absent is answered `invalid_identity`).
    #[schema(required = true, nullable = false, min_length = 1)]
    pub identity: Option<String>,
    /// Lifetime in seconds; the policy's default when absent.
    pub ttl: Option<i64>,
    /// Not-before, Unix seconds; now when absent.
    pub nbf: Option<i64>,
    /// Region for the `twr` header; the account's default when absent.
    pub region: Option<String>,
    /// Product grants.
    #[serde(default)]
    pub grants: GrantsRequest,
}

/// Product grants as sent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantsRequest {
    /// Programmable Chat / Conversations.
    pub chat: Option<ChatGrantRequest>,
    /// Programmable Video.
    pub video: Option<VideoGrantRequest>,
    /// Programmable Voice.
    pub voice: Option<VoiceGrantRequest>,
    /// Sync.
    pub data_sync: Option<SyncGrantRequest>,
    /// TaskRouter.
    pub task_router: Option<TaskRouterGrantRequest>,
    /// Live playback: passed through as given.
    #[schema(value_type = Option<Object>)]
    pub player: Option<Map<String, Value>>,
}

/// Chat grant as sent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatGrantRequest {
    pub(super) service_sid: Option<String>,
    pub(super) endpoint_id: Option<String>,
    pub(super) deployment_role_sid: Option<String>,
    pub(super) push_credential_sid: Option<String>,
}

/// Video grant as sent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoGrantRequest {
    pub(super) room: Option<String>,
}

/// Voice grant as sent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoiceGrantRequest {
    pub(super) incoming: Option<VoiceIncomingRequest>,
    pub(super) outgoing: Option<VoiceOutgoingRequest>,
    pub(super) push_credential_sid: Option<String>,
    pub(super) endpoint_id: Option<String>,
}

/// `voice.incoming` as sent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoiceIncomingRequest {
    pub(super) allow: Option<bool>,
}

/// `voice.outgoing` as sent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoiceOutgoingRequest {
    pub(super) application_sid: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub(super) params: Option<Map<String, Value>>,
}

/// Sync grant as sent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncGrantRequest {
    pub(super) service_sid: Option<String>,
    pub(super) endpoint_id: Option<String>,
}

/// TaskRouter grant as sent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRouterGrantRequest {
    pub(super) workspace_sid: Option<String>,
    pub(super) worker_sid: Option<String>,
    pub(super) role: Option<String>,
}

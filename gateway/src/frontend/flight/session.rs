//! Flight SQL sessions: the `SetSessionOptions`, `GetSessionOptions` and
//! `CloseSession` actions. Options (`catalog`, `schema`, `time_zone`, and
//! Sluice's `compression` and `endpoints`) are
//! kept two ways. The gateway remembers them by the caller's bearer token
//! (each login gets its own token), which is what ADBC and the Flight JDBC
//! driver send on every call. And the answer to `SetSessionOptions` carries
//! them signed after the token — `authorization: Bearer <token>.<session>` —
//! so a client that adopts the header (as it adopts the handshake's) is
//! served by any gateway with the key; a signed session in the header wins
//! over the remembered one. A statement's ticket carries the options it was
//! planned with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::Action;
use arrow_flight::flight_service_server::FlightService;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::FlightSqlServer;
use crate::auth::{Principal, Purpose};
use crate::catalog::{CATALOG_NAME, DEFAULT_DATABASE};
use crate::frontend::credentials::split_bearer;
use crate::query::{Parsed, SessionCommand};
use crate::session::Session;
use sluice_proto::FlightSession;
use sluice_proto::flight_session::{
    CloseSessionResult, CloseSessionStatus, GetSessionOptionsResult, OptionValue, SessionOptionValue,
    SetSessionOptionError, SetSessionOptionErrorValue, SetSessionOptionsRequest, SetSessionOptionsResult,
};

pub(super) const SET_SESSION_OPTIONS: &str = "SetSessionOptions";
pub(super) const GET_SESSION_OPTIONS: &str = "GetSessionOptions";
pub(super) const CLOSE_SESSION: &str = "CloseSession";

const CATALOG: &str = "catalog";
const SCHEMA: &str = "schema";
const TIME_ZONE: &str = "time_zone";
/// IPC body compression of results: `lz4_frame`, `zstd` or `none`.
pub(super) const COMPRESSION: &str = "compression";
/// Most endpoints a query's FlightInfo offers (1 to [`MAX_ENDPOINTS`]).
const ENDPOINTS: &str = "endpoints";
pub(super) const MAX_ENDPOINTS: u32 = 64;
const CODECS: &[&str] = &["lz4_frame", "zstd"];

/// How long sessions and closed-session ids are remembered (the token
/// lifetime is 12 h).
const REMEMBER: Duration = Duration::from_secs(24 * 3600);

/// Sessions by bearer token, and the ids of closed ones.
pub(super) struct Sessions {
    by_token: moka::sync::Cache<String, FlightSession>,
    closed: moka::sync::Cache<u64, ()>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            by_token: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REMEMBER)
                .build(),
            closed: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REMEMBER)
                .build(),
        }
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

type ActionStream = <FlightSqlServer as FlightService>::DoActionStream;

fn one_result(body: Vec<u8>) -> Response<ActionStream> {
    let result = arrow_flight::Result { body: body.into() };
    Response::new(Box::pin(futures::stream::iter(vec![Ok(result)])))
}

fn text(value: &str) -> SessionOptionValue {
    SessionOptionValue {
        option_value: Some(OptionValue::StringValue(value.to_owned())),
    }
}

impl FlightSqlServer {
    /// The session a request names, if any: its signature checked, owned by
    /// `principal`, not closed.
    pub(super) fn flight_session<T>(
        &self,
        request: &Request<T>,
        principal: &Principal,
    ) -> Result<Option<FlightSession>, Status> {
        let Some((token, encoded)) = self.bearer(request).map(split_bearer) else {
            return Ok(None);
        };
        let session = match encoded {
            Some(encoded) => {
                let invalid = || Status::unauthenticated("invalid session in authorization header");
                let signed = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| invalid())?;
                let payload = self.auth.open(Purpose::Session, &signed).ok_or_else(invalid)?;
                FlightSession::decode(payload.as_slice()).map_err(|_| invalid())?
            }
            None => match self.sessions.by_token.get(token) {
                Some(session) => session,
                None => return Ok(None),
            },
        };
        if session.user != principal.user {
            return Err(Status::permission_denied("session belongs to another user"));
        }
        if self.sessions.closed.contains_key(&session.id) {
            return Err(Status::not_found("session is closed"));
        }
        Ok(Some(session))
    }

    fn bearer<'r, T>(&self, request: &'r Request<T>) -> Option<&'r str> {
        request
            .metadata()
            .get("authorization")?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
            .map(str::trim)
    }

    /// A DataFusion session for `principal` with `options` applied.
    pub(super) async fn open_session(
        &self,
        principal: &Principal,
        options: Option<&FlightSession>,
    ) -> Result<Arc<Session>, Status> {
        let client = crate::query::audit::ClientAddr {
            protocol: "flight",
            peer: principal.peer,
        };
        let session = self.handler.open_session(&principal.user, &principal.roles, client)?;
        let Some(options) = options else {
            return Ok(session);
        };
        let mut settings = Vec::new();
        if let Some(schema) = &options.schema {
            settings.push(("search_path", format!("\"{}\"", schema.replace('"', "\"\""))));
        }
        if let Some(zone) = &options.time_zone {
            settings.push(("timezone", zone.clone()));
        }
        for (name, value) in settings {
            let set = Parsed::Session(SessionCommand::Set {
                name: name.to_owned(),
                value,
            });
            // Answered by the session itself: no planning, no job.
            self.handler.run(&session, "", &set).await?;
        }
        Ok(session)
    }

    /// The `authorization` value naming `session` (or no session).
    fn header<T>(
        &self,
        request: &Request<T>,
        principal: &Principal,
        session: Option<&FlightSession>,
    ) -> Result<MetadataValue<tonic::metadata::Ascii>, Status> {
        let token = match self.bearer(request) {
            Some(bearer) => split_bearer(bearer).0.to_owned(),
            None => self.auth.issue_token(principal),
        };
        let value = match session {
            Some(s) => format!(
                "Bearer {token}.{}",
                URL_SAFE_NO_PAD.encode(self.auth.sign(Purpose::Session, &s.encode_to_vec()))
            ),
            None => format!("Bearer {token}"),
        };
        MetadataValue::try_from(value).map_err(|e| Status::internal(e.to_string()))
    }

    pub(super) async fn do_session_action(&self, request: Request<Action>) -> Result<Response<ActionStream>, Status> {
        let principal = self.principal(&request).await?;
        let current = self.flight_session(&request, &principal)?;
        let (body, session) = match request.get_ref().r#type.as_str() {
            SET_SESSION_OPTIONS => {
                let cmd = SetSessionOptionsRequest::decode(request.get_ref().body.as_ref())
                    .map_err(|_| Status::invalid_argument("malformed SetSessionOptionsRequest"))?;
                let mut session = current.unwrap_or_else(|| FlightSession {
                    id: uuid::Uuid::new_v4().as_u64_pair().0,
                    user: principal.user.clone(),
                    ..Default::default()
                });
                let errors = self.apply(&principal, &mut session, cmd.session_options);
                if let Some((token, _)) = self.bearer(&request).map(split_bearer) {
                    self.sessions.by_token.insert(token.to_owned(), session.clone());
                }
                (SetSessionOptionsResult { errors }.encode_to_vec(), Some(session))
            }
            GET_SESSION_OPTIONS => {
                let options = BTreeMap::from([
                    (CATALOG.to_owned(), text(CATALOG_NAME)),
                    (
                        SCHEMA.to_owned(),
                        text(
                            current
                                .as_ref()
                                .and_then(|s| s.schema.as_deref())
                                .unwrap_or(DEFAULT_DATABASE),
                        ),
                    ),
                    (
                        TIME_ZONE.to_owned(),
                        text(current.as_ref().and_then(|s| s.time_zone.as_deref()).unwrap_or("UTC")),
                    ),
                    (
                        COMPRESSION.to_owned(),
                        text(
                            current
                                .as_ref()
                                .and_then(|s| s.compression.as_deref())
                                .unwrap_or("none"),
                        ),
                    ),
                    (
                        ENDPOINTS.to_owned(),
                        SessionOptionValue {
                            option_value: Some(OptionValue::Int64Value(i64::from(
                                current.as_ref().and_then(|s| s.endpoints).unwrap_or(1),
                            ))),
                        },
                    ),
                ]);
                let result = GetSessionOptionsResult {
                    session_options: options,
                };
                return Ok(one_result(result.encode_to_vec()));
            }
            _ => {
                if let Some(s) = &current {
                    self.sessions.closed.insert(s.id, ());
                }
                if let Some((token, _)) = self.bearer(&request).map(split_bearer) {
                    self.sessions.by_token.invalidate(token);
                }
                let status = CloseSessionStatus::Closed as i32;
                (CloseSessionResult { status }.encode_to_vec(), None)
            }
        };
        let header = self.header(&request, &principal, session.as_ref())?;
        let mut response = one_result(body);
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    /// Applies `options` to `session`; the ones refused, with why.
    fn apply(
        &self,
        principal: &Principal,
        session: &mut FlightSession,
        options: BTreeMap<String, SessionOptionValue>,
    ) -> BTreeMap<String, SetSessionOptionError> {
        let mut errors = BTreeMap::new();
        for (name, value) in options {
            let value = match value.option_value {
                None => None,
                Some(OptionValue::StringValue(s)) => Some(s),
                Some(OptionValue::Int64Value(n)) if name.eq_ignore_ascii_case(ENDPOINTS) => Some(n.to_string()),
                Some(_) => {
                    errors.insert(name, error(SetSessionOptionErrorValue::InvalidValue));
                    continue;
                }
            };
            let ok = match name.to_ascii_lowercase().as_str() {
                CATALOG => value.is_none_or(|c| c == CATALOG_NAME),
                SCHEMA => match value {
                    None => {
                        session.schema = None;
                        true
                    }
                    Some(s) if self.handler.schemas(&principal.user, &principal.roles).contains(&s) => {
                        session.schema = Some(s);
                        true
                    }
                    Some(_) => false,
                },
                TIME_ZONE | "timezone" => match value {
                    None => {
                        session.time_zone = None;
                        true
                    }
                    Some(z) => match crate::session::time_zone_setting(&z) {
                        Some(zone) => {
                            session.time_zone = Some(zone);
                            true
                        }
                        None => false,
                    },
                },
                COMPRESSION => match value.as_deref().map(str::to_ascii_lowercase) {
                    None => {
                        session.compression = None;
                        true
                    }
                    Some(c) if c == "none" => {
                        session.compression = None;
                        true
                    }
                    Some(c) => match CODECS.iter().find(|k| **k == c || c == k.trim_end_matches("_frame")) {
                        Some(codec) => {
                            session.compression = Some((*codec).to_owned());
                            true
                        }
                        None => false,
                    },
                },
                ENDPOINTS => match value.map(|v| v.trim().parse::<u32>()) {
                    None => {
                        session.endpoints = None;
                        true
                    }
                    Some(Ok(n)) if (1..=MAX_ENDPOINTS).contains(&n) => {
                        session.endpoints = (n > 1).then_some(n);
                        true
                    }
                    Some(_) => false,
                },
                _ => {
                    errors.insert(name, error(SetSessionOptionErrorValue::InvalidName));
                    continue;
                }
            };
            if !ok {
                errors.insert(name, error(SetSessionOptionErrorValue::InvalidValue));
            }
        }
        errors
    }
}

fn error(value: SetSessionOptionErrorValue) -> SetSessionOptionError {
    SetSessionOptionError { value: value as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_splits_at_the_session() {
        assert_eq!(split_bearer("abc"), ("abc", None));
        assert_eq!(split_bearer("abc.def"), ("abc", Some("def")));
    }
}

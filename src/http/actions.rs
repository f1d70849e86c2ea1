//! Acting on an inquiry from an alert: its page, "I'm on it" and "answered elsewhere", each
//! reachable with a signed link ([`super::links`]) instead of a token.
//!
//! | route | with a signed link | without one |
//! |---|---|---|
//! | `GET /inquiries/{id}` | `view` link: the page with the action buttons | read token: the page |
//! | `GET /inquiries/{id}/take` | `take` link: the confirmation | write token |
//! | `POST /inquiries/{id}/take` | `take` link: takes it | write token |
//! | `GET /inquiries/{id}/answered` | `answered` link: the form | write token |
//! | `POST /inquiries/{id}/answered` | `answered` link: records it | write token |
//!
//! A GET never changes anything: it shows what will happen and a form that POSTs to the same
//! link. A link names its recipient; a link for a shared channel names nobody, and its form
//! asks who is acting (so does the form reached with the write token). "Answered elsewhere"
//! goes through the same validation and engine command as `slawatch ack` and
//! `POST /api/v1/inquiries/{id}/ack`, so the ledger records exactly the same event.
//! A refused link (expired, edited, for another inquiry or action) is a 403 page saying why.

use std::collections::HashMap;

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use maud::{Markup, PreEscaped};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::state::Rejected;
use slawatch_core::tracker::{Inquiry, InquiryState};

use super::api::{AckBody, validate_ack};
use super::links::{LinkAction, LinkKey, LinkParams};
use super::markup::Text;
use super::page::{self, Actions, PageView, html, message_page};
use super::{AppState, Need};
use crate::engine::AckError;

/// A refusal page, boxed (a response is large; the happy path stays small).
type Refused = Box<Response>;

/// Longest name typed on a shared channel's form (as `by` of an ack).
const MAX_BY_CHARS: usize = 200;

/// Who is acting, as the request proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signed link for this person.
    Person(String),
    /// A shared channel's signed link: the form names who acts.
    Shared,
    /// A token (read for the page, write for actions): the form names who acts.
    Token,
}

impl Actor {
    fn how(&self) -> &'static str {
        match self {
            Actor::Person(_) => "link",
            Actor::Shared => "shared_link",
            Actor::Token => "api",
        }
    }
}

/// The link parameters of a query, when it carries a signature.
fn link_params(query: &HashMap<String, String>) -> Option<LinkParams> {
    let sig = query.get("sig")?;
    Some(LinkParams {
        to: query.get("to").cloned().unwrap_or_default(),
        exp: query.get("exp").and_then(|e| e.parse().ok()).unwrap_or(0),
        sig: sig.clone(),
    })
}

/// Checks a request for `action` on `id`: a valid signed link, else the token `need` asks for.
/// Returns who acts and the link's parameters, or the refusal to send.
fn authorize(
    state: &AppState,
    id: &InquiryId,
    action: LinkAction,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    need: Need,
) -> Result<(Actor, Option<LinkParams>), Refused> {
    let Some(params) = link_params(query) else {
        return match state.access.check(need, headers) {
            Ok(()) => Ok((Actor::Token, None)),
            Err(e) => Err(Box::new(axum::response::IntoResponse::into_response(e))),
        };
    };
    let Some(key) = &state.access.links else {
        return Err(Box::new(message_page(
            StatusCode::FORBIDDEN,
            "Link refused",
            "Signed links are not enabled on this server (http.link_key_file).",
        )));
    };
    match key.verify(id, action, &params, state.shared.now()) {
        Ok(to) if to.is_empty() => Ok((Actor::Shared, Some(params))),
        Ok(to) => Ok((Actor::Person(to), Some(params))),
        Err(e) => {
            tracing::info!(inquiry = %id, action = action.as_str(), reason = %e, "Signed link refused.");
            Err(Box::new(message_page(
                StatusCode::FORBIDDEN,
                "Link refused",
                &e.to_string(),
            )))
        }
    }
}

/// The action buttons of a page opened with a `view` link: links for the same recipient,
/// expiring with it.
fn actions_for(key: &LinkKey, id: &InquiryId, p: &LinkParams) -> Actions {
    let take = key.sign_until(id, LinkAction::Take, &p.to, p.exp);
    let answered = key.sign_until(id, LinkAction::Answered, &p.to, p.exp);
    Actions {
        take: LinkKey::path(id, LinkAction::Take, &take),
        answered: LinkKey::path(id, LinkAction::Answered, &answered),
    }
}

/// `GET /inquiries/{id}`: with a `view` link, the page and its actions; with the read token,
/// the page.
pub async fn page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let id = InquiryId(id.into());
    let (_, params) = match authorize(&state, &id, LinkAction::View, &query, &headers, Need::Read) {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    let (inquiry, entries, tz) = match page::load(&state, &id).await {
        Ok(loaded) => loaded,
        Err(response) => return response,
    };
    let actions = match (&state.access.links, &params) {
        (Some(key), Some(p)) => Some(actions_for(key, &id, p)),
        _ => None,
    };
    let view = PageView {
        entries: &entries,
        actions,
    };
    html(
        StatusCode::OK,
        page::render(&inquiry, &view, Utc::now(), tz),
    )
}

/// The inquiry, if it is still open; else the page saying what became of it.
/// An inquiry the tracker no longer holds is closed, and read from the store's projection.
async fn open_inquiry(state: &AppState, id: &InquiryId) -> Result<Inquiry, Refused> {
    match state.inquiry(id).await {
        Ok(None) => Err(Box::new(message_page(
            StatusCode::NOT_FOUND,
            "No such inquiry",
            &format!("There is no inquiry {id}."),
        ))),
        Ok(Some(i)) if i.state != InquiryState::Open => Err(Box::new(closed(&i))),
        Ok(Some(i)) => Ok(i),
        Err(e) => {
            tracing::warn!(error = %e, inquiry = %id, "Reading an inquiry from the store failed.");
            Err(Box::new(message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The ledger could not be read",
                "Try again in a moment.",
            )))
        }
    }
}

fn closed(i: &Inquiry) -> Response {
    let by = i
        .responder
        .as_deref()
        .map(|r| format!(" by {r}"))
        .unwrap_or_default();
    message_page(
        StatusCode::CONFLICT,
        "Nothing to do",
        &format!(
            "This inquiry is {}{by} (SLA {}): nothing to take or record.",
            match i.state {
                InquiryState::Responded => "already answered",
                InquiryState::Excluded => "not an inquiry",
                InquiryState::Merged => "merged into an older one",
                InquiryState::Open => "open",
            },
            i.sla.as_str()
        ),
    )
}

/// The form's action: the same path and link.
fn form_target(id: &InquiryId, action: LinkAction, params: &Option<LinkParams>) -> String {
    match params {
        Some(p) => LinkKey::path(id, action, p),
        None => action.path(id),
    }
}

/// A page with a heading, a summary of the inquiry and a form.
fn form_page(
    title: &str,
    i: &Inquiry,
    intro: &str,
    target: &str,
    fields: Markup,
    button: &str,
) -> Response {
    let customer = match &i.customer_name {
        Some(n) if !n.is_empty() => format!("{n} <{}>", i.customer),
        _ => i.customer.to_string(),
    };
    let left = i
        .deadline_at
        .map(|d| super::status::time_left(d - Utc::now()))
        .unwrap_or_default();
    let body = maud::html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" dir="ltr" {
            (page::head(title))
            body {
                main {
                    h1 id="title" { (Text(title)) }
                    p id="inquiry" {
                        span dir="auto" { (Text(&i.subject)) }
                        " — "
                        span dir="auto" { (Text(&customer)) }
                        " · " (i.channel.as_str()) "/" (i.language.as_str()) " · " (left)
                    }
                    p id="message" { (Text(intro)) }
                    form method="post" action=(Text(target)) {
                        (fields)
                        p { button class="button" type="submit" id="confirm" { (button) } }
                    }
                }
            }
        }
    };
    html(StatusCode::OK, body.into_string())
}

/// The field asking who acts, when the link does not say.
fn who_field(actor: &Actor) -> Markup {
    maud::html! {
        @if matches!(actor, Actor::Shared | Actor::Token) {
            p {
                label for="by" { "Your name" }
                br;
                input id="by" name="by" required maxlength=(MAX_BY_CHARS) autocomplete="name";
            }
        }
    }
}

/// What a take leaves on the phone: who has it until when, and the next step.
fn taken_page(by: &str, until: &str, answered: &str) -> Response {
    let body = maud::html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" dir="ltr" {
            (page::head("Taken"))
            body {
                main {
                    h1 id="title" { "Taken" }
                    p id="message" dir="auto" {
                        (Text(by)) " has it until " (until) ": re-notifications go to " (Text(by))
                        " only, and nothing escalates until then. Answer the customer, then \
                        record it."
                    }
                    p {
                        a class="button" id="answered" href=(Text(answered)) { "Answered elsewhere" }
                    }
                }
            }
        }
    };
    html(StatusCode::OK, body.into_string())
}

/// Who acts: the link's recipient, or the name typed in the form.
fn who(actor: &Actor, form: &HashMap<String, String>) -> Result<String, Refused> {
    if let Actor::Person(p) = actor {
        return Ok(p.clone());
    }
    let by = form.get("by").map(|b| b.trim()).unwrap_or_default();
    if by.is_empty() || by.chars().count() > MAX_BY_CHARS {
        return Err(Box::new(message_page(
            StatusCode::BAD_REQUEST,
            "Who are you?",
            &format!("Type your name (1 to {MAX_BY_CHARS} characters) and send the form again."),
        )));
    }
    Ok(by.to_string())
}

fn engine_error(e: AckError) -> Response {
    match e {
        AckError::Rejected(Rejected::UnknownInquiry(id)) => message_page(
            StatusCode::NOT_FOUND,
            "No such inquiry",
            &format!("There is no inquiry {id}."),
        ),
        AckError::Rejected(e @ Rejected::NotOpen(..)) => {
            message_page(StatusCode::CONFLICT, "Nothing to do", &e.to_string())
        }
        AckError::Rejected(e) => message_page(StatusCode::BAD_REQUEST, "Refused", &e.to_string()),
        e @ AckError::Store(_) => message_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Not recorded",
            &format!("{e}. Try again."),
        ),
        e @ (AckError::Stopped | AckError::Standby) => message_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not recorded",
            &format!("{e}. Try again in a moment."),
        ),
    }
}

/// `GET /inquiries/{id}/take`: what taking means, and the button.
pub async fn take_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let id = InquiryId(id.into());
    let (actor, params) =
        match authorize(&state, &id, LinkAction::Take, &query, &headers, Need::Write) {
            Ok(a) => a,
            Err(refused) => return *refused,
        };
    let inquiry = match open_inquiry(&state, &id).await {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let minutes = state.take_for.as_secs() / 60;
    let intro = format!(
        "Take this inquiry{}? For {minutes} minutes re-notifications go to you only and nothing \
         escalates. It is not an answer: the clock keeps running until the customer is answered.",
        match &actor {
            Actor::Person(p) => format!(" as {p}"),
            _ => String::new(),
        }
    );
    form_page(
        "I'm on it",
        &inquiry,
        &intro,
        &form_target(&id, LinkAction::Take, &params),
        who_field(&actor),
        "I'm on it",
    )
}

/// `POST /inquiries/{id}/take`: records the take.
pub async fn take(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let id = InquiryId(id.into());
    let (actor, params) =
        match authorize(&state, &id, LinkAction::Take, &query, &headers, Need::Write) {
            Ok(a) => a,
            Err(refused) => return *refused,
        };
    let Ok(Form(form)) = form else {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Refused",
            "The form could not be read.",
        );
    };
    let by = match who(&actor, &form) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    // An inquiry the tracker no longer holds is an old closed one (or none): the store says.
    let held = state.tracker().get(&id).is_some();
    if !held && let Err(r) = open_inquiry(&state, &id).await {
        return *r;
    }
    match state.engine.take(id.clone(), by.clone(), actor.how()).await {
        Ok(inquiry) => {
            let tz = state.tracker().rules().desk.time_zone;
            let until = inquiry
                .taken
                .as_ref()
                .map(|t| t.until.with_timezone(&tz).format("%H:%M %Z").to_string())
                .unwrap_or_default();
            let answered = match (&state.access.links, &params) {
                (Some(key), Some(p)) => {
                    let a = key.sign_until(&id, LinkAction::Answered, &p.to, p.exp);
                    LinkKey::path(&id, LinkAction::Answered, &a)
                }
                _ => LinkAction::Answered.path(&id),
            };
            taken_page(&by, &until, &answered)
        }
        Err(e) => engine_error(e),
    }
}

/// `GET /inquiries/{id}/answered`: how it was answered, an optional note, and the button.
pub async fn answered_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let id = InquiryId(id.into());
    let (actor, params) = match authorize(
        &state,
        &id,
        LinkAction::Answered,
        &query,
        &headers,
        Need::Write,
    ) {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    let inquiry = match open_inquiry(&state, &id).await {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let fields = maud::html! {
        (who_field(&actor))
        fieldset {
            legend { "How was the customer answered?" }
            label { input type="radio" name="via" value="phone" checked; " By phone" }
            br;
            label { input type="radio" name="via" value="other"; " Other" }
        }
        p {
            label for="note" { "Note (optional)" }
            br;
            textarea id="note" name="note" rows="3" maxlength="2000" dir="auto" {}
        }
    };
    form_page(
        "Answered elsewhere",
        &inquiry,
        "Record that the customer was answered on another channel, now. This stops the clock \
         and the alerts, exactly as `slawatch ack` does.",
        &form_target(&id, LinkAction::Answered, &params),
        fields,
        "Record the answer",
    )
}

/// `POST /inquiries/{id}/answered`: records the answer as `slawatch ack` does.
pub async fn answered(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let id = InquiryId(id.into());
    let (actor, _) = match authorize(
        &state,
        &id,
        LinkAction::Answered,
        &query,
        &headers,
        Need::Write,
    ) {
        Ok(a) => a,
        Err(refused) => return *refused,
    };
    let Ok(Form(form)) = form else {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Refused",
            "The form could not be read.",
        );
    };
    let by = match who(&actor, &form) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let via = match form.get("via").map(String::as_str) {
        Some("phone") | None => "phone",
        Some("other") => "other",
        Some(_) => {
            return message_page(
                StatusCode::BAD_REQUEST,
                "Refused",
                "How it was answered must be phone or other.",
            );
        }
    };
    let body = AckBody {
        by: Some(by),
        via: Some(via.to_string()),
        at: None,
        note: form.get("note").cloned(),
    };
    let ack = match validate_ack(&id, body, Utc::now()) {
        Ok(a) => a,
        Err(e) => return message_page(StatusCode::BAD_REQUEST, "Refused", &e.to_string()),
    };
    if let Err(r) = open_inquiry(&state, &id).await {
        return *r;
    }
    match state.engine.ack(ack).await {
        Ok(inquiry) => message_page(
            StatusCode::OK,
            "Recorded",
            &format!(
                "Answered by {} via {via}: the alerts stop. SLA {}.",
                inquiry.responder.as_deref().unwrap_or("?"),
                inquiry.sla.as_str()
            ),
        ),
        Err(e) => engine_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use slawatch_core::domain::{Channel, Language};
    use slawatch_core::testing;
    use slawatch_core::tracker::Event;

    const HOSTILE: &str = "<script>alert('x')</script> & \"quoted\"";
    const ESCAPED: &str =
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;";

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn assert_escaped(html: &str, times: usize) {
        assert!(
            !html.contains("<script>"),
            "raw markup from outside:\n{html}"
        );
        assert!(
            !html.contains("\"quoted\""),
            "raw quotes from outside:\n{html}"
        );
        assert_eq!(html.matches(ESCAPED).count(), times, "{html}");
    }

    #[tokio::test]
    async fn hostile_text_is_escaped_on_the_form_and_taken_pages() {
        let mut tracker = testing::tracker();
        let mut opened = testing::opened(
            1,
            Channel::Email,
            Language::Ar,
            Utc::now() - TimeDelta::minutes(3),
        );
        opened.subject = HOSTILE.to_string();
        opened.customer_name = Some(HOSTILE.to_string());
        let id = opened.inquiry_id.clone();
        tracker.apply(&Event::InquiryOpened(opened));
        let inquiry = tracker
            .get(&id)
            .cloned()
            .unwrap_or_else(|| panic!("inquiry"));
        // Title (in <title> and <h1>), subject, customer, intro, form target.
        let form = body(form_page(
            HOSTILE,
            &inquiry,
            HOSTILE,
            HOSTILE,
            who_field(&Actor::Shared),
            HOSTILE,
        ))
        .await;
        assert_escaped(&form, 6);
        assert!(form.contains("<input id=\"by\" name=\"by\" required maxlength=\"200\""));
        // The name twice, the link once.
        let taken = body(taken_page(HOSTILE, "14:35 +03", HOSTILE)).await;
        assert_escaped(&taken, 3);
    }
}

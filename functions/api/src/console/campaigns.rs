//! Campaigns: a new one (lists × template × sender × start × pace, made as a draft whose
//! estimate shows before it is started), each one's progress (made, delivered, failed,
//! skipped, opted out, clicked), and start, pause, resume and cancel, through the same
//! service as `/v1/campaigns`.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use holub_shared::domain::{CampaignId, CampaignState, MessageStatus, Scope};
use holub_shared::services::campaigns::{CampaignRequest, CampaignView};
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::CsrfOnly;
use super::view::{Lang, csrf, hryvnias, kyiv_time};
use super::{Answer, Failure, Signed, render};
use crate::AppState;
use crate::error::ApiError;

/// Campaigns on the page, newest first (each one's progress is read from the statistics).
const SHOWN: usize = 20;

fn state_name(lang: Lang, state: CampaignState) -> &'static str {
    match state {
        CampaignState::Draft => lang.t("чернетка", "draft"),
        CampaignState::Running => lang.t("триває", "running"),
        CampaignState::Paused => lang.t("призупинено", "paused"),
        CampaignState::Completed => lang.t("завершено", "completed"),
        CampaignState::Cancelled => lang.t("скасовано", "cancelled"),
    }
}

fn actions(signed: &Signed, c: &CampaignView) -> Markup {
    let lang = signed.lang;
    let allowed: &[(&str, &str, &str)] = match c.state {
        CampaignState::Draft => &[
            ("start", "Запустити", "Start"),
            ("cancel", "Скасувати", "Cancel"),
        ],
        CampaignState::Running => &[
            ("pause", "Призупинити", "Pause"),
            ("cancel", "Скасувати", "Cancel"),
        ],
        CampaignState::Paused => &[
            ("resume", "Продовжити", "Resume"),
            ("cancel", "Скасувати", "Cancel"),
        ],
        CampaignState::Completed | CampaignState::Cancelled => &[],
    };
    html! {
        @for (action, uk, en) in allowed {
            form method="post" class="inline" action={ "/console/campaigns/" (c.id) "/" (action) } {
                (csrf(signed))
                button type="submit" class=(if *action == "cancel" { "danger" } else { "secondary" }) {
                    (lang.t(uk, en))
                }
            }
            " "
        }
    }
}

fn progress(lang: Lang, c: &CampaignView) -> Markup {
    let p = &c.progress;
    let count = |s: MessageStatus| {
        p.statuses
            .as_ref()
            .and_then(|m| m.get(&s).copied())
            .unwrap_or(0)
    };
    let failed = count(MessageStatus::Failed)
        + count(MessageStatus::Undelivered)
        + count(MessageStatus::Expired)
        + count(MessageStatus::Rejected);
    let sent = count(MessageStatus::Sent) + count(MessageStatus::Delivered) + failed;
    let total = c.estimate.recipients.max(p.expanded).max(1);
    html! {
        p {
            label class="check" {
                (lang.t("Створено повідомлень", "Messages made")) ": " (p.expanded) " / " (c.estimate.recipients)
                progress max=(total) value=(p.expanded) {}
            }
        }
        ul class="counters" {
            li { (lang.t("надіслано", "sent")) ": " span class="v" { (sent) } }
            li { (lang.t("доставлено", "delivered")) ": " span class="v" { (count(MessageStatus::Delivered)) } }
            li { (lang.t("не доставлено", "failed")) ": " span class="v" { (failed) } }
            li { (lang.t("пропущено", "skipped")) ": " span class="v" { (p.skipped.values().sum::<u64>()) } }
            li { (lang.t("без згоди", "no consent")) ": " span class="v" { (p.skipped_no_consent) } }
            li { (lang.t("відписалися", "opted out")) ": " span class="v" { (p.opted_out) } }
            li { (lang.t("перейшли за посиланням", "clicked")) ": " span class="v" { (p.clicked.unwrap_or(0)) } }
        }
    }
}

pub async fn list(State(state): State<AppState>, signed: Signed) -> Answer {
    signed.may(Scope::MessagesRead)?;
    let lang = signed.lang;
    let tenant = &signed.session.tenant;
    let page = state
        .campaigns
        .list(tenant, None, SHOWN)
        .await
        .map_err(ApiError::from)?;
    let mut campaigns = Vec::with_capacity(page.campaigns.len());
    for c in page.campaigns {
        // With its progress from the statistics (a listing has none).
        let full = match c.id.parse::<CampaignId>() {
            Ok(id) => state.campaigns.get(tenant, &id).await.unwrap_or(c),
            Err(_) => c,
        };
        campaigns.push(full);
    }
    let may_send = signed.may(Scope::MessagesSend).is_ok();
    let new_form = if may_send {
        new_campaign(&state, &signed).await?
    } else {
        html! {}
    };
    let title = lang.t("Кампанії", "Campaigns");
    let body = html! {
        (new_form)
        @if campaigns.is_empty() {
            p { (lang.t("Кампаній ще немає.", "No campaigns yet.")) }
        }
        @for c in &campaigns {
            section class="card" aria-labelledby={ "c-" (c.id) } {
                h2 id={ "c-" (c.id) } { (c.name) }
                p {
                    strong { (state_name(lang, c.state)) }
                    @if let Some(why) = &c.stopped_by { " (" (why) ")" }
                    " · " (c.from) " · " (lang.t("створено", "made")) " " (kyiv_time(c.created_at))
                    " · " (lang.t("оцінка", "estimate")) " " (hryvnias(lang, c.estimate.cost_kopiyky))
                    " · " a href={ "/console/messages?batch_id=" (c.batch_id) } { (lang.t("повідомлення", "messages")) }
                }
                (progress(lang, c))
                @if may_send { (actions(&signed, c)) }
            }
        }
    };
    Ok(render(&signed, "/console/campaigns", title, body))
}

/// The form of a new campaign, from the account's templates, lists and senders.
async fn new_campaign(state: &AppState, signed: &Signed) -> Result<Markup, Failure> {
    let lang = signed.lang;
    let tenant = &signed.session.tenant;
    let templates = state
        .templates
        .list(tenant, None, TEMPLATES_OFFERED)
        .await
        .map_err(ApiError::from)?
        .templates;
    let lists = state.contacts.lists(tenant).await.map_err(ApiError::from)?;
    let senders = state.senders.list(tenant).await.map_err(ApiError::from)?;
    if templates.is_empty() || lists.is_empty() || senders.is_empty() {
        return Ok(html! {
            p class="hint" id="new-campaign-needs" {
                (lang.t(
                    "Для кампанії потрібні шаблон, список контактів і відправник.",
                    "A campaign needs a template, a contact list and a sender.",
                ))
            }
        });
    }
    Ok(html! {
        details {
            summary { (lang.t("Нова кампанія", "New campaign")) }
            form id="new-campaign" method="post" action="/console/campaigns" {
                (csrf(signed))
                label for="c-name" { (lang.t("Назва", "Name")) }
                input type="text" id="c-name" name="name" maxlength="100" required;
                label for="c-template" { (lang.t("Шаблон", "Template")) }
                select id="c-template" name="template_id" required {
                    @for t in &templates {
                        option value=(t.id) {
                            (t.name) " (v" (t.version) ", "
                            (if t.category.is_marketing() { lang.t("рекламний", "marketing") } else { lang.t("сервісний", "transactional") })
                            ")"
                        }
                    }
                }
                fieldset {
                    legend { (lang.t("Списки контактів", "Contact lists")) }
                    @for l in &lists {
                        label class="check" {
                            input type="checkbox" name="list" value=(l.as_str());
                            " " (l.as_str())
                        }
                    }
                }
                label for="c-from" { (lang.t("Відправник", "Sender")) }
                select id="c-from" name="from" required {
                    @for s in &senders { option value=(s.sender.as_str()) { (s.sender.as_str()) } }
                }
                label for="c-start" { (lang.t("Не раніше (час київський; порожньо — коли запустите)", "Not before (Kyiv time; empty: when started)")) }
                input type="datetime-local" id="c-start" name="start_at";
                label for="c-pace" { (lang.t("Темп, повідомлень за хвилину (порожньо — якнайшвидше)", "Pace, messages a minute (empty: as fast as allowed)")) }
                input type="number" id="c-pace" name="pace_per_minute" min="1" max="1000000";
                label class="check" {
                    input type="checkbox" name="track_links" value="on";
                    (lang.t("Відстежувати переходи за посиланнями", "Track link clicks"))
                }
                p class="hint" {
                    (lang.t(
                        "Кампанію створено як чернетку з оцінкою вартості; надсилання почнеться, коли ви її запустите.",
                        "The campaign is made as a draft with its cost estimate; sending begins when you start it.",
                    ))
                }
                p { button type="submit" { (lang.t("Створити чернетку", "Make the draft")) } }
            }
        }
    })
}

/// The templates a new campaign may choose from (the oldest first, as listed).
const TEMPLATES_OFFERED: usize = 100;

#[derive(Deserialize)]
struct NewCampaign {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    template_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    start_at: String,
    #[serde(default)]
    pace_per_minute: String,
    #[serde(default)]
    track_links: Option<String>,
}

/// A new campaign, as a draft: its estimate shows on the list, and it is started there.
pub async fn create(
    State(state): State<AppState>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Answer {
    // The lists come as repeated `list=` fields, read apart from the form.
    let form: NewCampaign = super::keys::serde_urlencoded_form(&body)?;
    signed.check_csrf(&form.csrf)?;
    signed.may(Scope::MessagesSend)?;
    let lists: Vec<String> = url::form_urlencoded::parse(&body)
        .filter(|(k, _)| k == "list")
        .map(|(_, v)| v.into_owned())
        .collect();
    let start_at = super::compose::send_at_utc(&form.start_at)
        .map_err(|()| Failure::BadForm("start_at is a Kyiv date and time".to_owned()))?;
    let pace = form.pace_per_minute.trim();
    let pace_per_minute = match pace {
        "" => None,
        n => Some(
            n.parse::<u64>()
                .map_err(|_| Failure::BadForm("pace_per_minute is a whole number".to_owned()))?,
        ),
    };
    let request = CampaignRequest {
        name: form.name,
        template_id: form.template_id,
        template_version: None,
        lists,
        from: form.from,
        start_at,
        pace_per_minute,
        track_links: form.track_links.is_some(),
        validity: None,
    };
    state
        .campaigns
        .create(&signed.session.tenant, request)
        .await
        .map_err(ApiError::from)?;
    Ok(Redirect::to("/console/campaigns").into_response())
}

pub async fn act(
    State(state): State<AppState>,
    signed: Signed,
    Path((id, action)): Path<(String, String)>,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Answer {
    signed.posted(form, Scope::MessagesSend)?;
    let id = id.parse::<CampaignId>().map_err(|_| Failure::NotFound)?;
    let tenant = &signed.session.tenant;
    let campaigns = &state.campaigns;
    let done = match action.as_str() {
        "start" => campaigns.start(tenant, &id).await,
        "pause" => campaigns.pause(tenant, &id).await,
        "resume" => campaigns.resume(tenant, &id).await,
        "cancel" => campaigns.cancel(tenant, &id).await,
        _ => return Err(Failure::NotFound),
    };
    done.map_err(ApiError::from)?;
    Ok(Redirect::to("/console/campaigns").into_response())
}

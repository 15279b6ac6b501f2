//! Campaigns: each one's progress (made, delivered, failed, skipped, opted out, clicked),
//! and start, pause, resume and cancel, through the same service as `/v1/campaigns`.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use holub_shared::domain::{CampaignId, CampaignState, MessageStatus, Scope};
use holub_shared::services::campaigns::CampaignView;
use maud::{Markup, html};

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
    let title = lang.t("Кампанії", "Campaigns");
    let body = html! {
        p class="hint" {
            (lang.t(
                "Кампанію створюють через API (POST /v1/campaigns): списки контактів × шаблон × відправник × час × темп.",
                "Campaigns are made through the API (POST /v1/campaigns): contact lists × template × sender × time × pace.",
            ))
        }
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

//! What every console page shares: the language, the layout, the security headers, and how
//! times and money are written.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::http::header::{self, HeaderValue};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use holub_shared::domain::kyiv;
use maud::{DOCTYPE, Markup, html};

use super::{LANG_COOKIE, Signed, cookie};

/// The console's two languages: Ukrainian first, English by a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    Uk,
    En,
}

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "uk" => Some(Lang::Uk),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Uk => "uk",
            Lang::En => "en",
        }
    }

    /// The words in this language.
    pub fn t<'a>(self, uk: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Uk => uk,
            Lang::En => en,
        }
    }

    /// The request's language: its cookie, else Ukrainian.
    pub fn of(headers: &HeaderMap) -> Lang {
        cookie(headers, LANG_COOKIE)
            .and_then(Lang::parse)
            .unwrap_or_default()
    }
}

tokio::task_local! {
    static LANG: Lang;
}

/// The language of the request being answered (for failures, which are rendered where the
/// request is out of reach).
pub fn current_lang() -> Lang {
    LANG.try_with(|l| *l).unwrap_or_default()
}

/// Answers the request in its language, with the headers every console answer carries: a
/// content security policy that allows only the console's own script and styles (no inline
/// script or style at all), no framing, no referrer to other sites, and no caching of pages.
pub async fn headers_and_lang(request: Request, next: Next) -> Response {
    let lang = Lang::of(request.headers());
    let mut response = LANG.scope(lang, next.run(request)).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The console's sections, in the order of the menu: path, Ukrainian, English.
pub const SECTIONS: [(&str, &str, &str); 8] = [
    ("/console/compose", "Надіслати", "Compose"),
    ("/console/messages", "Повідомлення", "Messages"),
    ("/console/campaigns", "Кампанії", "Campaigns"),
    ("/console/analytics", "Аналітика", "Analytics"),
    ("/console/contacts", "Контакти", "Contacts"),
    ("/console/keys", "API-ключі", "API keys"),
    ("/console/settings", "Налаштування", "Settings"),
    ("/console/users", "Користувачі", "Users"),
];

fn head(lang: Lang, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Holub" }
            link rel="stylesheet" href=(super::assets::href("console.css"));
            script src=(super::assets::href("console.js")) defer {}
            meta name="holub-lang" content=(lang.as_str());
        }
    }
}

fn language_switch(lang: Lang, back: &str) -> Markup {
    html! {
        p class="lang" {
            @for (code, label) in [("uk", "Українська"), ("en", "English")] {
                @if code == lang.as_str() {
                    span aria-current="true" lang=(code) { (label) }
                } @else {
                    a href={ "/console/lang/" (code) "?back=" (back) } hreflang=(code) lang=(code) { (label) }
                }
            }
        }
    }
}

/// A page inside the layout: the menu (with `active` marked), the user, sign-out.
pub fn layout(signed: &Signed, active: &str, title: &str, body: Markup) -> Response {
    let lang = signed.lang;
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.as_str()) {
            (head(lang, title))
            body {
                a class="skip" href="#main" { (lang.t("До змісту", "Skip to content")) }
                header class="top" {
                    p class="brand" { a href="/console/compose" { "Holub" } }
                    nav aria-label=(lang.t("Розділи", "Sections")) {
                        ul {
                            @for (path, uk, en) in SECTIONS {
                                li {
                                    @if path == active {
                                        a href=(path) aria-current="page" { (lang.t(uk, en)) }
                                    } @else {
                                        a href=(path) { (lang.t(uk, en)) }
                                    }
                                }
                            }
                        }
                    }
                    div class="who" {
                        span class="email" { (signed.session.email.as_str()) }
                        " · "
                        span class="role" { (role_name(lang, signed.role())) }
                        " "
                        form method="post" action="/console/sign-out" class="inline" {
                            (csrf(signed))
                            button type="submit" class="link" { (lang.t("Вийти", "Sign out")) }
                        }
                    }
                    (language_switch(lang, active))
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// A page without the menu: sign-in, invitations, failures.
pub fn bare(lang: Lang, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang=(lang.as_str()) {
            (head(lang, title))
            body class="bare" {
                header class="top" {
                    p class="brand" { "Holub" }
                    (language_switch(lang, "/console/"))
                }
                main id="main" { (body) }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// The hidden field every form of a signed-in page carries.
pub fn csrf(signed: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(signed.session.csrf); }
}

pub fn role_name(lang: Lang, role: holub_shared::domain::Role) -> &'static str {
    use holub_shared::domain::Role;
    match role {
        Role::Owner => lang.t("власник", "owner"),
        Role::Sender => lang.t("відправник", "sender"),
        Role::Viewer => lang.t("глядач", "viewer"),
    }
}

/// An amount in hryvnias: `12,34 грн` in Ukrainian, `UAH 12.34` in English.
pub fn hryvnias(lang: Lang, kopiyky: i64) -> String {
    let sign = if kopiyky < 0 { "-" } else { "" };
    let k = kopiyky.unsigned_abs();
    let (whole, part) = (k / 100, k % 100);
    // Thousands apart with a narrow no-break space, as Ukrainian writes them.
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(match lang {
                Lang::Uk => '\u{202f}',
                Lang::En => ',',
            });
        }
        grouped.push(c);
    }
    match lang {
        Lang::Uk => format!("{sign}{grouped},{part:02} грн"),
        Lang::En => format!("{sign}UAH {grouped}.{part:02}"),
    }
}

/// An instant as a Kyiv wall-clock time.
/// A secret shown the one time it is: a warning to copy it, the secret, what else to know,
/// and the way back.
pub fn shown_once(warning: &str, secret: &str, more: Markup, back: (&str, &str)) -> Markup {
    html! {
        p role="alert" { (warning) }
        p class="secret" id="secret" { (secret) }
        (more)
        p { a href=(back.0) { (back.1) } }
    }
}

pub fn kyiv_time(at: DateTime<Utc>) -> String {
    kyiv::to_local(at).format("%d.%m.%Y %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_as_each_language_writes_it() {
        assert_eq!(hryvnias(Lang::Uk, 85), "0,85 грн");
        assert_eq!(hryvnias(Lang::Uk, 12_345_678), "123\u{202f}456,78 грн");
        assert_eq!(hryvnias(Lang::En, 12_345_678), "UAH 123,456.78");
        assert_eq!(hryvnias(Lang::En, -5), "-UAH 0.05");
    }
}

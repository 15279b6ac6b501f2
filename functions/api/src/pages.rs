//! A list's page as a client asks for it: where it starts and how long it is.

use std::str::FromStr;

use crate::error::ApiError;
use crate::routes::invalid;

/// Where a page starts (`cursor`, the `next` of the previous page, read as the list's id)
/// and how many entries it has: `limit`, 1 to `max`, 50 if not given.
pub(crate) fn page_params<C: FromStr>(
    cursor: Option<String>,
    limit: Option<usize>,
    max: usize,
) -> Result<(Option<C>, usize), ApiError> {
    let cursor = cursor
        .map(|c| c.parse::<C>())
        .transpose()
        .map_err(|_| invalid("cursor_invalid", "cursor", "not a cursor from this API"))?;
    let limit = match limit {
        None => 50,
        Some(n) if (1..=max).contains(&n) => n,
        Some(_) => {
            return Err(invalid(
                "limit_invalid",
                "limit",
                &format!("limit is 1 to {max}"),
            ));
        }
    };
    Ok((cursor, limit))
}

//! The monolith's tables in the `legacy` schema: products (its own copy), carts and orders.
//! Every query is checked at run time (`query_as`), like the other services'.

pub mod carts;
pub mod orders;
pub mod products;

/// A cart id: the monolith's plain numbers. Anything else (a new service's `crt_…`
/// included) names no cart here.
pub fn parse_id(raw: &str) -> Option<i64> {
    if raw.is_empty() || raw.len() > 18 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_plain_numbers() {
        assert_eq!(super::parse_id("1042"), Some(1042));
        for bad in ["", "crt_01", "-1", "+1", "1e3", " 1", "9999999999999999999"] {
            assert_eq!(super::parse_id(bad), None, "{bad}");
        }
    }
}

//! Where an order's stock is. Each stock move is conditional on it (`reserved` → `released`
//! or `sold`, `released` → `reserved` again for a late payment), so each happens at most once
//! per order.

/// An order's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Nothing held yet (a pending order).
    None,
    /// Held for every line.
    Reserved,
    /// Handed back (the order ended unpaid, or its hold ran out).
    Released,
    /// Turned into a sale (confirmed).
    Sold,
}

impl Holding {
    /// Every value.
    pub const ALL: [Holding; 4] = [
        Holding::None,
        Holding::Reserved,
        Holding::Released,
        Holding::Sold,
    ];

    /// The database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Holding::None => "none",
            Holding::Reserved => "reserved",
            Holding::Released => "released",
            Holding::Sold => "sold",
        }
    }
}

common::named!(Holding, "order stock");

#[cfg(test)]
mod tests {
    use super::Holding;

    #[test]
    fn names_round_trip() {
        for holding in Holding::ALL {
            assert_eq!(holding.as_str().parse::<Holding>().unwrap(), holding);
        }
    }
}

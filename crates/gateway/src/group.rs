//! The route groups the gateway can send to a new service, and the one flag each has.
//! A group is both a set of paths and a flag name, so it is one small enum used by routing,
//! the flag snapshot, the rollback windows and the metrics labels.

use std::fmt;

/// A route group: the paths one new service takes over from legacy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// `/v1/carts` and `/v1/carts/**` → the cart service.
    Cart,
    /// `/v1/orders` and `/v1/orders/**` → the orders service.
    Orders,
    /// `/v1/webhooks/stripe` → the payments service.
    Payments,
}

impl Group {
    /// Every group, in index order.
    pub const ALL: [Group; 3] = [Group::Cart, Group::Orders, Group::Payments];

    /// The flag's name (`cart`, `orders`, `payments`).
    pub const fn name(self) -> &'static str {
        match self {
            Group::Cart => "cart",
            Group::Orders => "orders",
            Group::Payments => "payments",
        }
    }

    /// The group's position in per-group arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The group a flag name names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.name() == name)
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Group;

    #[test]
    fn names_parse_back_and_indexes_are_dense() {
        for (i, group) in Group::ALL.into_iter().enumerate() {
            assert_eq!(Group::parse(group.name()), Some(group));
            assert_eq!(group.index(), i);
        }
        assert_eq!(Group::parse("legacy"), None);
    }
}

//! Enums stored and sent by a fixed name per variant (an order's status, a payment's): the
//! parsing and printing each of them needs, written once. The enum keeps its own table of
//! names (`ALL`, `as_str`); [`named!`](crate::named!) derives [`Named`], `Display`, `FromStr`
//! and `TryFrom<String>` from it.

/// An enum with one fixed name per variant.
pub trait Named: Copy + 'static {
    /// What the names name, for errors (`"order status"`).
    const KIND: &'static str;

    /// Every variant.
    fn all() -> &'static [Self];

    /// The variant's name, as stored and sent.
    fn name(self) -> &'static str;
}

/// A name none of the enum's variants has: from a database row, a bug.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct UnknownName {
    /// What was being parsed.
    pub kind: &'static str,
    /// The name given.
    pub name: String,
}

/// The variant named `name`.
pub fn parse<T: Named>(name: &str) -> Result<T, UnknownName> {
    T::all()
        .iter()
        .copied()
        .find(|variant| variant.name() == name)
        .ok_or_else(|| UnknownName {
            kind: T::KIND,
            name: name.to_owned(),
        })
}

/// Implements [`Named`] (what the names name: `$kind`), `Display`, `FromStr` and
/// `TryFrom<String>` (for `#[sqlx(try_from = "String")]`) for an enum with an inherent
/// `const ALL: [Self; N]` and `fn as_str(self) -> &'static str`.
#[macro_export]
macro_rules! named {
    ($ty:ty, $kind:literal) => {
        impl $crate::named::Named for $ty {
            const KIND: &'static str = $kind;

            fn all() -> &'static [Self] {
                &<$ty>::ALL
            }

            fn name(self) -> &'static str {
                <$ty>::as_str(self)
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::named::Named::name(*self))
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::named::UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::named::parse(s)
            }
        }

        impl TryFrom<String> for $ty {
            type Error = $crate::named::UnknownName;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                $crate::named::parse(&s)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Light {
        Red,
        Green,
    }

    impl Light {
        const ALL: [Light; 2] = [Light::Red, Light::Green];

        fn as_str(self) -> &'static str {
            match self {
                Light::Red => "red",
                Light::Green => "green",
            }
        }
    }

    crate::named!(Light, "light");

    #[test]
    fn names_round_trip_and_an_unknown_one_is_named_in_the_error() {
        for light in Light::ALL {
            assert_eq!(light.to_string().parse::<Light>().unwrap(), light);
            assert_eq!(Light::all(), Light::ALL);
        }
        let unknown = Light::try_from("amber".to_owned()).unwrap_err();
        assert_eq!(unknown.to_string(), r#"unknown light "amber""#);
    }
}

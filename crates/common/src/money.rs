//! Money as integer minor units plus an ISO 4217 currency code; never floats.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// An upper-case three-letter ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// US dollars, the default for a new cart.
    pub const USD: Currency = Currency(*b"USD");

    /// The code as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }
}

/// A code that is not three upper-case letters.
#[derive(Debug, thiserror::Error)]
#[error("currency must be a three-letter upper-case ISO 4217 code")]
pub struct InvalidCurrency;

impl FromStr for Currency {
    type Err = InvalidCurrency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; 3] = s.as_bytes().try_into().map_err(|_| InvalidCurrency)?;
        if bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Self(bytes))
        } else {
            Err(InvalidCurrency)
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// An amount in minor units (cents) of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Minor units; negative only for refunds and adjustments.
    pub amount: i64,
    /// The currency of `amount`.
    pub currency: Currency,
}

impl Money {
    /// An amount of `currency`.
    pub fn new(amount: i64, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// `self * quantity`, or `None` on overflow.
    pub fn times(self, quantity: u32) -> Option<Self> {
        self.amount
            .checked_mul(i64::from(quantity))
            .map(|amount| Self { amount, ..self })
    }

    /// `self + other`, or `None` on overflow or a currency mismatch.
    pub fn plus(self, other: Self) -> Option<Self> {
        if self.currency != other.currency {
            return None;
        }
        self.amount
            .checked_add(other.amount)
            .map(|amount| Self { amount, ..self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_three_upper_case_letters() {
        assert_eq!("EUR".parse::<Currency>().unwrap().as_str(), "EUR");
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(bad.parse::<Currency>().is_err(), "{bad}");
        }
    }

    #[test]
    fn money_refuses_to_mix_currencies_or_overflow() {
        let usd = Money::new(250, Currency::USD);
        assert_eq!(usd.times(3).unwrap().amount, 750);
        assert!(usd.plus(Money::new(1, "EUR".parse().unwrap())).is_none());
        assert!(Money::new(i64::MAX, Currency::USD).times(2).is_none());
    }
}

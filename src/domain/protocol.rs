//! The merchant protocol an order was created with (`orders.protocol`): it decides the
//! callback's shape and signature. The protocols' rules themselves live in `crate::protocol`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V1,
    GmPay,
    EPay,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::GmPay => "gmpay",
            Protocol::EPay => "epay",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "v1" => Protocol::V1,
            "gmpay" => Protocol::GmPay,
            "epay" => Protocol::EPay,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Protocol::V1, Protocol::GmPay, Protocol::EPay] {
            assert_eq!(Protocol::parse(p.as_str()), Some(p));
        }
        assert_eq!(Protocol::parse("V1"), None);
    }
}

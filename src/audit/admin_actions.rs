//! Actions of the admin API and `epusdt admin` (issue 12), re-exported by `audit::actions`.
pub const ADMIN_LOGIN: &str = "admin.login";
pub const ADMIN_LOGIN_FAILED: &str = "admin.login_failed";
/// A username reached the failed-login limit and is locked for the window.
pub const ADMIN_LOCKED: &str = "admin.locked";
pub const ADMIN_LOGIN_REFUSED_LOCKED: &str = "admin.login_refused_locked";
pub const ADMIN_LOGOUT: &str = "admin.logout";
/// An already-rotated refresh token was presented: its whole family was revoked.
pub const ADMIN_REFRESH_REPLAYED: &str = "admin.refresh_replayed";
pub const ADMIN_ADD: &str = "admin.add";
pub const ADMIN_DISABLE: &str = "admin.disable";
pub const ADMIN_ENABLE: &str = "admin.enable";
pub const ADMIN_ROLE: &str = "admin.role";
pub const ADMIN_PASSWORD_RESET: &str = "admin.password_reset";
pub const ADMIN_PASSWORD_CHANGE: &str = "admin.password_change";
pub const ADMIN_TOTP_STARTED: &str = "admin.totp_started";
pub const ADMIN_TOTP_ENABLED: &str = "admin.totp_enabled";
pub const ADMIN_TOTP_RESET: &str = "admin.totp_reset";
pub const MERCHANT_ROTATE_SECRET: &str = "merchant.rotate_secret";
pub const WALLET_UPDATE: &str = "wallet.update";
pub const ORDER_RESEND: &str = "order.resend";
pub const RATE_SET: &str = "rate.set";
/// A native coin's USDT price was set (`epusdt rate price`, the admin API).
pub const PRICE_SET: &str = "price.set";
pub const MERCHANT_UPDATE: &str = "merchant.update";
/// An operator credited a late/partial/overpaid/unmatched transfer to an order (reason in details).
pub const ORDER_RESOLVE_CREDIT: &str = "order.resolve_credit";
/// An operator dismissed such a transfer (reason in details).
pub const ORDER_RESOLVE_DISMISS: &str = "order.resolve_dismiss";
/// An operator reloaded the configuration (SIGHUP / `systemctl reload`): the keys applied and
/// the ones that need a restart.
pub const CONFIG_RELOADED: &str = "config.reloaded";
/// The Telegram bot refused an unlinked user (at most once per user per 10 minutes).
pub const TELEGRAM_REFUSED: &str = "telegram.refused";
/// A Telegram user was linked to (or unlinked from) an admin account.
pub const ADMIN_TELEGRAM_LINK: &str = "admin.telegram_link";
pub const ADMIN_TELEGRAM_UNLINK: &str = "admin.telegram_unlink";

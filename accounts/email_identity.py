"""One mailbox, however it is spelt: the address a welcome bonus is granted to once."""

# Providers that deliver first.last@ and firstlast@ to the same mailbox.
DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def email_normalise(email: str) -> str:
    """Lower case, without a +tag (name+music@ reaches name@), and without dots where the
    provider ignores them. Not an address to mail: only for telling mailboxes apart."""
    local, _, domain = email.strip().lower().rpartition("@")
    if "+" in local[1:]:
        local = local[: local.index("+", 1)]
    if domain in DOTLESS_DOMAINS:
        local, domain = local.replace(".", ""), DOTLESS_DOMAINS[domain]
    return f"{local}@{domain}"

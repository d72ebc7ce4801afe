"""HQ's console (issue 16): a member's whole story, the fleet of tills, open alerts,
and the chain-wide actions (block a card, acknowledge an alert, unfreeze a till,
add a campaign), each allowed by role and written to HQ's audit log."""

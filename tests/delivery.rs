//! Delivery to the next hop: retries while it is down, DSNs, held and rejected verdicts.

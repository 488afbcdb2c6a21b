"""French conventions: mobile numbers, a territory's wall-clock time, dates as a French reader expects them."""

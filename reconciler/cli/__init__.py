"""``brokerctl``: the command line, a thin front end over ``ops``."""

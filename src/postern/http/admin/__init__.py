"""The admin API: the WildDuck HTTP API's paths, parameters and answers."""

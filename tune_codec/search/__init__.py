"""The search on Ray Tune: space, trials, stoppers, populations, clusters, cost, summary, driver."""

"""Analytics: data fusion, identification, tags, clusters, segments, preferences and R&D insights."""

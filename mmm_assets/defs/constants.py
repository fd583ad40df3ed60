"""Names the Dagster layer shares: the job, the partition tag, asset groups and owners."""

#: The job that refreshes the whole graph (the CLI, the schedule and the landing sensor start it).
JOB = "weekly_refresh"
#: The run tag holding a run's partition, here its market.
PARTITION_TAG = "dagster/partition"
#: Who answers for the assets (shown in the UI).
OWNERS = ["team:marketing-science"]

#: Asset groups, in the order the data flows.
INGEST_GROUP = "ingest"
FEATURES_GROUP = "features"
MODEL_GROUP = "model"
DECISIONS_GROUP = "decisions"

#: The asset a landing file feeds; named in the alert of a rejected file.
LANDING_ASSET = "marketing_spend"

#: The market column's value of tables over every market (all_markets_budget); no market can be named so.
ALL_MARKETS = "*"

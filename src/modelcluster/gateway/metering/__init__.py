"""Metering: the usage of every inference request (:mod:`.records`), its ledger in a database (:mod:`.ledger`,
:mod:`.schema`, :mod:`.migrate`), the tenants' budgets (:mod:`.budgets`) and usage reads (:mod:`.usage`)."""

"""The SOC analyst's part of the web view: from seeing an alert to acting on it.

* :mod:`~finsa.dashboards.soc.filterlang`: the flow filter language, compiled to parameterised SQL;
* :mod:`~finsa.dashboards.soc.flowsearch`: flow search requests, their SQL, limits and CSV;
* :mod:`~finsa.dashboards.soc.alertpage`: everything about one alert for one user;
* :mod:`~finsa.dashboards.soc.triage`: who may triage what, and what a verdict sets in motion;
* :mod:`~finsa.dashboards.soc.routes`: the routes and pages (``/alerts/{id}``, ``/flows``, ``/work``, their APIs);
* :mod:`~finsa.dashboards.soc.demo_users`: ``finsa run``'s demo logins.

Every read goes through the user's tenant view; every change through :mod:`finsa.storage.triage`
into the store and the audit log.
"""

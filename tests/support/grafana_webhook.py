"""A body Grafana's webhook contact point posts to POST /api/v1/alerts/grafana,
for the tests of receiving alerts (in memory and on a running node)."""

# Grafana's documented webhook body (alerting, webhook notifier), trimmed to two alerts
GRAFANA_BODY = {
    "receiver": "notify-control-api",
    "status": "firing",
    "orgId": 1,
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "NotifyMemoryCritical", "grafana_folder": "notify",
                       "node": "n1", "severity": "critical"},
            "annotations": {"summary": "RSS is 97% of the memory budget",
                            "runbook_url": "docs/runbook.md#memory"},
            "startsAt": "2026-11-27T09:51:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://grafana:3000/alerting/grafana/mem/view",
            "fingerprint": "c6eadffa33fcdf37",
            "silenceURL": "http://grafana:3000/alerting/silence/new",
            "dashboardURL": "", "panelURL": "",
            "values": {"B": 0.97, "C": 1},
            "valueString": "[ var='B' value=0.97 ]",
        },
        {
            "status": "firing",
            "labels": {"alertname": "NotifyP99High", "node": "n1"},
            "annotations": {"summary": "p99 is 180 ms"},
            "startsAt": "2026-11-27T09:56:03.157076+02:00",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "bc97ff14869b13e3",
            "values": {"B": 180.0},
        },
    ],
    "groupLabels": {}, "commonLabels": {"node": "n1"}, "commonAnnotations": {},
    "externalURL": "http://grafana:3000/", "version": "1",
    "groupKey": '{}:{alertname="NotifyMemoryCritical"}', "truncatedAlerts": 0,
    "title": "[FIRING:2]", "state": "alerting", "message": "**Firing**",
}

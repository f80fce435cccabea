"""The report's words in Japanese and English: control names, the standards each maps
to, status names, attestation items and the glossary. One table, read by the JSON,
CSV and HTML renderings alike."""

from __future__ import annotations

__all__ = ["ATTEST_ITEMS", "CONTROL_INFO", "GLOSSARY", "STATUS_LABELS"]

# control -> (English, Japanese, {standard: clause})
CONTROL_INFO: dict[str, tuple[str, str, dict[str, str]]] = {
    "COVERAGE": ("Every dataset has a backup policy and runs", "全データのバックアップ実施",
                 {"MIC": "ICT-BCP 様式7", "ISO": "27001 A.8.13", "NIST": "CP-9",
                  "3-2-1-1-0": "3"}),
    "RPO": ("Recovery point within RPO, no gap over it", "目標復旧時点(RPO)の遵守",
            {"MIC": "ICT-BCP 様式7 (頻度)", "ISO": "27001 A.8.13", "NIST": "CP-9, 800-34",
             "3-2-1-1-0": "-"}),
    "RETENTION": ("Oldest point meets the retention target", "保存期間の遵守",
                  {"MIC": "ICT-BCP 様式7", "ISO": "27001 A.8.13", "NIST": "CP-9",
                   "3-2-1-1-0": "-"}),
    "OFFSITE": ("Off-site copy outside the hazard zone, one immutable",
                "遠隔地保管(被災想定区域外)・改ざん不能な複製",
                {"MIC": "遠隔地バックアップ", "ISO": "27031", "NIST": "CP-6(1), CP-9(d)",
                 "3-2-1-1-0": "1-1"}),
    "ENCRYPTION": ("Every point encrypted, key held apart, escrow present",
                   "暗号化・鍵の分離保管・鍵預託",
                   {"MIC": "暗号化と鍵管理", "ISO": "27001 A.8.24", "NIST": "CP-9(8)",
                    "3-2-1-1-0": "-"}),
    "DRILL": ("Successful restore drill, within RTO, data validated",
              "復旧訓練の実施(目標復旧時間内・データ検証)",
              {"MIC": "ICT-BCP 様式12", "ISO": "27001 A.8.13, 22301 §8.5",
               "NIST": "CP-4, CP-9(1)", "3-2-1-1-0": "0"}),
    "ZERO-ERRORS": ("No failed verification in the period", "検証エラーなし",
                    {"MIC": "-", "ISO": "27001 A.8.13", "NIST": "CP-9(1)",
                     "3-2-1-1-0": "0"}),
}

STATUS_LABELS: dict[str, tuple[str, str]] = {
    "PASS": ("pass", "適合"),
    "WARN": ("warning", "注意"),
    "FAIL": ("fail", "不適合"),
    "NOT_EVALUATED": ("not evaluated (evidence missing)", "未評価(証跡なし)"),
    "EXEMPT": ("exempt (approved exception)", "適用除外(承認済み)"),
}

# What only a person can attest; drsync records who said so and when, never computes it.
ATTEST_ITEMS: dict[str, tuple[str, str]] = {
    "policy-approval": ("Backup policy approved", "バックアップ方針の承認"),
    "bia": ("Business impact analysis behind RTO/RPO/MTD", "業務影響分析(BIA)"),
    "hazard-assessment": ("Hazard assessment of the sites", "拠点の被災想定評価"),
    "exercise": ("Exercise (tabletop or full) with report and actions",
                 "訓練(机上・実動)の実施と報告"),
    "access-review": ("Review of who can delete backups", "削除権限者の棚卸し"),
    "call-in-plan": ("Call-in plan (参集体制)", "参集体制"),
    "alternate-site": ("Alternate site and emergency power", "代替拠点・非常用電源"),
    "plan-revision": ("BCP revised", "業務継続計画の改訂"),
}

GLOSSARY: tuple[tuple[str, str, str], ...] = (
    ("RPO", "目標復旧時点", "Recovery point objective: how much recent data may be lost"),
    ("RTO", "目標復旧時間", "Recovery time objective: how long bringing a system back may "
                         "take"),
    ("Recovery point", "復旧ポイント", "A backup (snapshot) a restore can return to"),
    ("Drill", "復旧訓練", "A real restore to a scratch target, validated and timed"),
    ("Off-site copy", "遠隔地保管", "A copy outside the hazard zone of the primary site"),
    ("Object Lock", "改ざん防止ロック", "Storage that refuses deletion until a date"),
    ("Escrow", "鍵預託", "A wrapping of the key that the fleet operator's key opens"),
    ("団体コード", "団体コード", "The local government code of the municipality"),
    ("非常時優先業務", "非常時優先業務", "Business that must continue in a disaster"),
    ("NOT_EVALUATED", "未評価", "The evidence needed was not recorded: never counted as pass"),
    ("EXEMPT", "適用除外", "An approved exception with an approver and an expiry date"),
)

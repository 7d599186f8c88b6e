"""Every message an API client reads, in the design document's language, in one table.

Code raises errors and builds answers by key (`text("interval_range", ...)`); the English
technical detail, where one helps (the value received, the accepted format), travels in the
error's `detail` and reaches the client in the body's `details`. Log lines stay English.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MESSAGES", "text"]

MESSAGES: dict[str, str] = {
    # Answers of successful operations (document section 3).
    "task_created": "任务创建成功",
    "task_updated": "任务更新成功",
    "task_deleted": "任务删除成功",
    "task_paused": "任务暂停成功",
    "task_resumed": "任务恢复成功",
    "task_reordered": "任务优先级调整成功",
    "task_run_now": "任务已安排立即执行",
    "task_cancelled": "已请求停止正在执行的轮次，该轮次将记录为 cancelled",
    "dispatcher_started": "调度器已启动",
    "dispatcher_stopped": "调度器已停止",
    "limit_saved": "限流规则已保存",
    "limit_deleted": "限流规则已删除",
    "bulk_done": "批量操作完成：{changed} 个任务成功，{failed} 个失败",
    "bulk_dry_run": "预演完成：{changed} 个任务将被修改，{failed} 个会失败（未做任何修改）",
    "import_done": "导入完成：创建 {created} 个，更新 {updated} 个，{failed} 行出错",
    # Tasks and accounts.
    "task_not_found": "任务不存在: {task_id}",
    "account_exists": "账户ID '{account_id}' 已存在任务 '{task_id}'，同一账户不能创建多个任务",
    "unknown_task_type": "task_type '{task_type}' 未注册；已注册的任务类型: {known}",
    # State conflicts (409).
    "pause_conflict": "任务状态为 {status}，只有 pending 或 running 的任务可以暂停",
    "resume_conflict": "任务状态为 {status}，只有 paused 或 error 的任务可以恢复",
    "reorder_running": "任务正在运行，无法调整优先级",
    "reorder_no_next": "任务状态为 {status}，没有可调整的下次执行时间",
    "reorder_past_end": "调整后的执行时间晚于任务结束时间 task_end_time，请减小 priority_offset",
    "run_running": "任务正在运行，无法立即执行",
    "run_conflict": "任务状态为 {status}，只有 pending 的任务可以立即执行；请先恢复任务",
    "run_past_end": "任务已超过结束时间 task_end_time，无法执行",
    "cancel_not_running": "任务状态为 {status}，当前没有正在执行的轮次可以停止",
    # Field validation (422, or 400 where the document says so).
    "required": "{field} 为必填项",
    "not_empty": "{field} 不能为 null 或空",
    "id_length": "{field} 长度必须为 1..{max} 个字符，收到 {length} 个",
    "id_whitespace": "{field} 不能包含空白或控制字符",
    "id_reserved": "{field} 不能包含以下字符: {chars}",
    "text_length": "{field} 最多 {max} 个字符",
    "text_control": "{field} 不能包含控制字符或孤立的代理字符",
    "json_depth": "{field} 嵌套不能超过 {max} 层",
    "json_surrogate": "{field} 不能包含孤立的代理字符",
    "json_not_finite": "{field} 不能包含 NaN 或 Infinity",
    "kwargs_size": "运行参数 kwargs 共 {size} 字节，上限为 {max} 字节",
    "interval_range": "interval 必须是 1..{max} 之间的整数秒，收到 {value}",
    "horizon": "{field} 必须早于 3000-01-01",
    "end_in_past": "task_end_time '{value}' 已经过去；请给出未来的日期或时间，或 null",
    "end_format": (
        "task_end_time 必须是 ISO 8601 日期（如 '2026-02-08'，表示当天结束）"
        "或时间（如 '2026-02-08T18:00:00'，可带 '+08:00' 或 'Z'），收到 {value}"
    ),
    "first_run_after_end": "首次执行时间将晚于 task_end_time；请推迟结束时间或提前开始时间",
    "instant_format": (
        "{field} 必须是 ISO 8601 时间，如 '2026-02-08T18:00:00' 或 "
        "'2026-02-08T18:00:00+08:00'，收到 {value}"
    ),
    "timezone_unknown": "timezone {value} 不是已知的 IANA 时区名（如 'Asia/Shanghai'）",
    "window_format": (
        "valid_time_range 必须是两个整点小时 [start, end]，start 取 0..23，end 取 0..24，"
        "且不相等；收到 {value}"
    ),
    "windows_format": (
        "windows 必须是 'HH:MM-HH:MM' 形式的时段列表（如 ['09:00-11:30', '22:00-02:00']），"
        "小时 00..23（24:00 只能作为结束），开始与结束不能相同；收到 {value}"
    ),
    "windows_and_range": (
        "windows 与 valid_time_range 只能给出一个（valid_time_range 是 windows 的简写）"
    ),
    "weekdays_format": (
        "weekdays 必须是 1..7 之间的整数列表（1 为星期一），且不能为空；收到 {value}"
    ),
    "blackout_format": (
        "blackout_dates 必须是日期 'YYYY-MM-DD' 或日期范围 'YYYY-MM-DD..YYYY-MM-DD' 的列表，"
        "范围的结束不能早于开始；收到 {value}"
    ),
    "calendar_never_open": (
        "按 windows、weekdays 与 blackout_dates，{days} 天内没有任何可执行的时段；请放宽日历"
    ),
    "jitter_range": "jitter_s 必须是 0..interval（{interval}）之间的整数秒，收到 {value}",
    "max_runs_range": "max_runs 必须为 null 或不小于 1 的整数，收到 {value}",
    "misfire_policy": "misfire_policy 必须是 'run_once' 或 'skip'，收到 {value}",
    "misfire_grace_range": "misfire_grace_s 必须是 0..{max} 之间的整数秒，收到 {value}",
    "tags_format": "tags 必须是最多 {max} 个字符串的列表",
    "tag_format": "标签 {value} 无效：每个标签 1..{max} 个字符，不能包含空白、控制字符或逗号",
    "queue_format": (
        "{field} {value} 不是有效的 Celery 队列名：1..64 个字符，以字母或数字开头，"
        "只能包含字母、数字和 _ . : @ -；null 表示按 sys_type 规则或默认队列"
    ),
    "queue_reserved": (
        "{field} '{value}' 是 Celery 的内部队列（以 .dq2 或 .pidbox 结尾，或以 celeryev. 开头），"
        "不能作为任务的队列"
    ),
    "limit_not_found": "限流规则不存在: {name}",
    "limit_name": (
        "限流规则名称 '{value}' 无效：1..64 个字符，以字母或数字开头，"
        "只能包含字母、数字和 _ . : @ -"
    ),
    "limit_match": (
        "{field} 无效：match 只能包含 tag、sys_type、task_type，值为 1..128 个字符的字符串"
    ),
    "limit_cap_range": "{field} 必须为 null 或 1..{max} 之间的整数，收到 {value}",
    "limit_needs_cap": "限流规则至少需要 max_concurrent 或 max_starts 之一",
    "limit_rate_pair": "max_starts 与 per_s 必须同时给出",
    "limits_too_many": "限流规则最多 {max} 条；请删除不用的规则",
    "until_past": "until 必须是将来的时间",
    "priority_offset_range": "priority_offset 必须在 ±{max} 秒以内",
    "status_unknown": "status '{value}' 未知；可选值: {known}",
    "limit_range": "limit 必须在 1..1000 之间，收到 {value}",
    "q_length": "q（账户 ID 或名称的前缀）必须为 1..{max} 个字符",
    "sort_unknown": "sort '{value}' 未知；可选值: created（创建时间）、next（下次执行时间）",
    "offset_range": "offset 必须在 0..1000000000 之间，收到 {value}",
    "count_range": "count 必须在 1..100 之间，收到 {value}",
    "stream_id": "{field}: '{value}' 不是有效的 id（形如 1767225600000-0）",
    # Requests the API cannot read.
    "body_not_json": "请求体不是有效的 JSON",
    "body_content_type": "请求体必须是 JSON，并带有 'Content-Type: application/json'",
    "body_too_large": "请求体超过 {max} 字节的上限",
    "invalid_field": "{field} 的值无效（原因见 details）",
    "unknown_field": "{field} 是未知字段，请求体不接受（请检查拼写；可用字段见 /docs）",
    "route_not_found": "接口不存在: {path}",
    "method_not_allowed": "接口 {path} 不支持该请求方法",
    # Fleet operations: bulk actions, import and export.
    "days_ids": "ids 须为 1..{max} 个以逗号分隔的任务 ID",
    "bulk_action": "action '{value}' 无效；可选: {actions}",
    "bulk_selection": "请给出 select（筛选条件）或 task_ids（任务 ID 列表）之一",
    "bulk_too_many": "一次批量操作最多 {max} 个任务；请缩小 select 的范围或分批提交",
    "bulk_needs": "action '{action}' 需要字段 {field}",
    "request_id": (
        "request_id '{value}' 无效：1..64 个字符，字母或数字开头，只含字母、数字和 _ . : -"
    ),
    "import_content_type": (
        "Content-Type 须为 application/x-ndjson（每行一个 JSON 对象）或 text/csv，收到 {value}"
    ),
    "import_encoding": "导入文件须为 UTF-8 文本",
    "import_too_many": "一次最多导入 {max} 行；请拆分文件",
    "import_on_conflict": "on_conflict 须为 error 或 update，收到 {value}",
    "import_unknown_columns": "CSV 表头含未知列: {columns}",
    "import_not_json": "不是有效的 JSON: {reason}",
    "import_not_object": "每行须为一个 JSON 对象（创建任务的请求体）",
    "import_cell_count": "该行有 {given} 个字段，表头有 {expected} 列",
    "import_cell_json": "{field}: '{value}' 不是有效的 JSON 值（数字、列表、对象写成 JSON）",
    "import_field": "字段 {field} 无效: {reason}",
    "import_identity": "账户已有任务，但 sys_type 或 task_type 不同；导入不能修改它们",
    # Notifications (alerts): the resource.
    "notification_saved": "通知已保存",
    "notification_deleted": "通知已删除",
    "notification_test_queued": "测试通知已加入发送队列，结果见 recent_deliveries",
    "notification_not_found": "通知不存在: {name}",
    "notification_name": (
        "通知名称 '{value}' 无效：1..64 个字符，以字母或数字开头，只能包含字母、数字和 _ . : @ -"
    ),
    "notification_url": "url 必须是 http:// 或 https:// 开头、带主机名的地址（最多 {max} 个字符）",
    "notification_events": "events 必须是非空的事件名列表；可选: {known}",
    "notification_event": "{field}: 未知事件 {value}；可选: {known}",
    "notification_format": "format {value} 无效；可选: {known}",
    "notification_secret": "secret 必须为 null 或 1..{max} 个字符的字符串，且不能包含控制字符",
    "notification_match": "match 只能包含 tags（标签列表）与 queue（队列名）",
    "notification_range": "{field} 必须是 {min}..{max} 之间的整数秒，收到 {value}",
    "notifications_too_many": "通知最多 {max} 个；请删除不用的通知",
    # Notifications (alerts): the one-line text of each message, by event.
    "notify_task_error": "{count} 个账户的任务进入错误状态：{names}",
    "notify_task_recovered": "{count} 个账户的任务已从错误状态恢复：{names}",
    "notify_round_failed": "{count} 个账户的轮次执行失败：{names}",
    "notify_round_lost": "{count} 个账户的轮次丢失（执行它的 worker 中断）：{names}",
    "notify_round_cancelled": "{count} 个账户的轮次被取消：{names}",
    "notify_task_overdue": "{count} 个账户的任务超时未开始执行：{names}",
    "notify_task_caught_up": "{count} 个账户的任务已恢复按时执行：{names}",
    "notify_queue_unserved": "{count} 个队列有待执行的轮次，但没有存活的 worker 消费：{names}",
    "notify_queue_served": "{count} 个队列重新有 worker 消费：{names}",
    "notify_beat_down": "调度器已开启，但没有存活的 beat：新的轮次不会派发",
    "notify_beat_up": "beat 已恢复，轮次重新开始派发",
    "notify_worker_down": "{count} 个 worker 停止了心跳：{names}",
    "notify_worker_up": "{count} 个 worker 恢复了心跳：{names}",
    "notify_test": "这是 taskdispatch 发给通知 {name} 的测试消息",
    "notify_more": "{names} 等 {count} 个",
    "notify_messages": "{count} 条消息等待执行",
    "notify_link": "查看",
    # Rate limiting.
    "rate_limited": "请求过于频繁：每{per}最多 {count} 次，请 {retry_after} 秒后重试",
    # Access and availability.
    "unauthorized_missing": "未授权: 缺少 'Authorization: Bearer <token>' 请求头",
    "unauthorized_invalid": "未授权: bearer token 无效",
    "anonymous_remote": (
        "拒绝访问: 服务器未配置任何令牌，只接受本机请求。请设置 TASKDISPATCH_API_TOKEN"
        "（或 TASKDISPATCH_API_TOKENS），或设置 TASKDISPATCH_ALLOW_ANONYMOUS=true 明确允许匿名访问"
    ),
    "forbidden_role": "权限不足: 该操作需要 {needed} 角色，令牌 '{name}' 的角色是 {role}",
    "store_unavailable": "Redis（{url}）无法连接，任务存储暂不可用，请稍后重试",
    "transaction_contended": (
        "数据在读取与写入之间被其他请求反复修改（已尝试 {attempts} 次），未写入，请稍后重试"
    ),
    "store_refuses": "Redis（{url}）暂时拒绝写入（{reason}），请稍后重试",
    "write_not_replicated": (
        "写入已被 Redis 主节点执行，但 {timeout_ms} 毫秒内只有 {confirmed} 个副本确认"
        "（要求 {required} 个）：主从切换后该写入可能丢失。请先查询确认结果，再决定是否重试"
    ),
    "pool_exhausted": "该 API 进程的并发请求过多（Redis 连接已用尽），请稍后重试",
    "internal_error": "内部服务器错误",
}


def text(key: str, **params: Any) -> str:
    """The message `key` with its `{placeholders}` filled in."""
    return MESSAGES[key].format(**params)

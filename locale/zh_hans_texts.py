# ruff: noqa: E501, RUF001
"""Simplified Chinese for every text the platform marks for translation (msgid → msgstr).

`python locale/zh_hans_texts.py` fills locale/zh_Hans/LC_MESSAGES/django.po from this table
after `manage.py makemessages -l zh_Hans`, then `manage.py compilemessages` builds the .mo
file that is committed (a fresh machine needs no gettext). It lists msgids it cannot fill."""

from __future__ import annotations

import re
import sys
from pathlib import Path

PO = Path(__file__).resolve().parent / "zh_Hans" / "LC_MESSAGES" / "django.po"

ZH: dict[str, str | list[str]] = {
    # --- admin: confirmations of destructive bulk actions (courier, identity)
    "Delete the face data of %(count)d person(s)?": "删除 %(count)d 人的人脸数据？",
    "Their face templates and photos are deleted at once and cannot be restored; consent stays, and they can enroll again.": "其人脸模板和照片将立即删除且无法恢复；同意保持有效，可重新录入。",
    "Withdraw the biometric consent of %(count)d person(s)?": "撤回 %(count)d 人的生物特征同意？",
    "Their face templates and photos are deleted at once and face pickup stops until they consent again on the enrollment page.": "其人脸模板和照片将立即删除，刷脸取件停止，直到其在录入页面重新同意。",
    "Cancel %(count)d parcel(s)?": "取消 %(count)d 个包裹？",
    "A cancelled parcel cannot be deposited any more; parcels already in a cabinet are left as they are.": "已取消的包裹不能再投递；已在柜机中的包裹保持不变。",
    # --- face by challenge (protocol 1.2): prompts, refusals, confirmation
    "Drop-off by face is not available with a challenge yet: please use your code.": "挑战式刷脸暂不支持寄件：请使用您的寄件码。",
    "Face scan failed: please use your pickup code.": "刷脸失败：请使用取件码。",
    "%(message)s The pickup code always works.": "%(message)s 取件码始终可用。",
    "This confirmation was already used.": "此确认已被使用。",
    "That took too long.": "超时了。",
    "Those digits are not right: face pickup is locked for this parcel.": "号码不正确：此包裹的刷脸取件已锁定。",
    "Face pickup is not available on this cabinet's software version: please use your pickup code.": "此柜机的软件版本不支持刷脸取件：请使用取件码。",
    "The camera picture did not change: please look at the camera again.": "摄像头画面没有变化：请再看一次摄像头。",
    "The camera picture could not be read: please try again.": "无法读取摄像头画面：请重试。",
    "Keep your face in the frame and look at the camera.": "请保持脸部在画面内并看向摄像头。",
    "Only one person at a time in front of the camera, please.": "请一次只有一人站在摄像头前。",
    "Hold still, too much movement.": "请保持不动，动作幅度太大。",
    "Please blink.": "请眨眨眼。",
    "Turn your head slowly to the left.": "请慢慢向左转头。",
    "Turn your head slowly to the right.": "请慢慢向右转头。",
    "Face pickup needs you in person: please use your pickup code.": "刷脸取件需要本人在场：请使用取件码。",
    # --- merged later: admin operations, face at the door, enrollment
    "Put into maintenance (asks for a reason)": "进入维护（需填写原因）",
    "Abort (asks to confirm)": "中止（需确认）",
    "Retire (asks for a reason; cannot be undone)": "停用（需填写原因；不可撤销）",
    "Retry failed": "重试失败项",
    "Rotate credentials (delivered over the link; asks to confirm)": "轮换凭据（经连接下发；需确认）",
    "Revoke now (a stolen key: the cabinet goes offline)": "立即吊销（密钥被盗：柜机将离线）",
    "Please look at the camera again.": "请再看一次摄像头。",
    "Enter the last four digits of your phone number.": "请输入您手机号码的后四位。",
    "Skip the code next time: set up face pickup from the link in our text message.": "下次免输取件码：请通过我们短信中的链接开通刷脸取件。",
    "This photo is almost the same as one you already sent: take the next one at another moment (another day, other light), so that the locker knows you then too.": "这张照片与您已发送的照片几乎相同：请换个时间（另一天、不同光线）再拍下一张，让快递柜在那时也能认出您。",
    "This token is not valid: log in with your phone again.": "此令牌无效：请重新用手机登录。",
    "Error:": "错误：",
    "Please correct the error below.": "请修正下面的错误。",
    "You are authenticated as %(username)s, but are not authorized to access this page. Would you like to login to a different account?": "您已以 %(username)s 身份登录，但无权访问此页面。要登录其他账号吗？",
    "Forgotten your login credentials?": "忘记了登录信息？",
    "language": "语言",
    # --- admin flash messages
    "Keys revoked: %(count)d.": "已吊销密钥：%(count)d 个。",
    "Parcels changed: %(count)d.": "已更改包裹：%(count)d 件。",
    "Face templates deleted: %(count)d.": "已删除人脸模板：%(count)d 个。",
    "Consent withdrawn; face templates deleted: %(count)d.": "已撤回同意；已删除人脸模板：%(count)d 个。",
    "Credentials revoked: %(count)d.": "已吊销凭据：%(count)d 个。",
    "Left as they are: %(count)d. %(why)s": "未作更改：%(count)d 个。%(why)s",
    "Rollout %(rollout)s created as a draft; start it here.": "已创建发布 %(rollout)s 的草稿；请在此启动。",
    "%(operation)s: done.": "%(operation)s：已完成。",
    "%(serial)s: %(operation)s: done.": "%(serial)s：%(operation)s：已完成。",
    "Cabinets in maintenance take no new parcels; parcels inside stay collectable.": "维护中的柜机不再接收新包裹；柜内包裹仍可取出。",
    "Put {count} cabinet(s) into maintenance?": "将 {count} 台柜机置为维护？",
    "A retired cabinet is closed for good: its link is cut and no operation brings it back.": "停用的柜机将永久关闭：其连接被切断，任何操作都无法恢复。",
    "Retire {count} cabinet(s)?": "停用 {count} 台柜机？",
    "Cabinets not yet sent the version are cancelled; an aborted rollout cannot be resumed.": "尚未下发该版本的柜机将被取消；已中止的发布无法恢复。",
    "Abort {count} rollout(s)?": "中止 {count} 个发布？",
    "Confirm for %(count)s": "确认 %(count)s 个",
    # --- admin
    "free / all": "空闲 / 全部",
    "telemetry": "遥测",
    "credential": "凭据",
    "Activate (provisioned cabinets go live)": "启用（已部署的柜机上线）",
    "Back from maintenance": "结束维护",
    "Take out of service": "停用",
    "Return to service": "恢复使用",
    "compartment": "格口",
    "payload": "内容",
    "result": "结果",
    "cabinets": "柜机",
    "progress": "进度",
    "targets": "目标",
    "Start": "开始",
    "Pause": "暂停",
    "Resume": "继续",
    "Issue an API key (shown once)": "签发 API 密钥（仅显示一次）",
    "Set a new cabinet PIN (shown once)": "设置新的柜机 PIN（仅显示一次）",
    "Revoke the selected keys": "吊销所选密钥",
    "Cancel (announced parcels not yet in a cabinet)": "取消（已预报但尚未入柜的包裹）",
    "Extend the pickup deadline (once)": "延长取件期限（限一次）",
    "Delete face data (templates and photos) now": "立即删除人脸数据（模板和照片）",
    "Withdraw biometric consent (deletes face data)": "撤回生物识别同意（删除人脸数据）",
    "Delete the person's face data now": "立即删除此人的人脸数据",
    "last seen": "最近在线",
    "telemetry at": "遥测时间",
    "issued": "签发",
    "expires": "过期",
    "sent": "发送",
    "received": "收到",
    "completed": "完成",
    "at": "时间",
    "Django site admin": "Django 站点管理员",  # as Django's own catalogue has them
    "Django administration": "Django 管理",
    "All times: %(zone)s (%(offset)s)": "所有时间：%(zone)s（%(offset)s）",
    # --- admin: model names
    "cabinet": "柜机",
    "cabinet event": "柜机事件",
    "cabinet events": "柜机事件",
    "compartments": "格口",
    "compartment event": "格口事件",
    "compartment events": "格口事件",
    "cabinet credential": "柜机凭据",
    "cabinet credentials": "柜机凭据",
    "cabinet command": "柜机指令",
    "cabinet commands": "柜机指令",
    "cabinet message": "柜机消息",
    "cabinet messages": "柜机消息",
    "cabinet tag": "柜机标签",
    "cabinet tags": "柜机标签",
    "cabinet import": "柜机导入",
    "cabinet imports": "柜机导入",
    "rollout": "分批发布",
    "rollouts": "分批发布",
    "rollout wave": "发布批次",
    "rollout waves": "发布批次",
    "rollout target": "发布目标",
    "rollout targets": "发布目标",
    "rollout event": "发布事件",
    "rollout events": "发布事件",
    "carrier": "快递公司",
    "carriers": "快递公司",
    "courier": "快递员",
    "couriers": "快递员",
    "parcel": "包裹",
    "parcels": "包裹",
    "parcel event": "包裹事件",
    "parcel events": "包裹事件",
    "carrier staff": "快递公司员工",
    "carrier api key": "快递公司 API 密钥",
    "carrier api keys": "快递公司 API 密钥",
    "notification": "通知",
    "notifications": "通知",
    "access attempt": "开柜尝试",
    "access attempts": "开柜尝试",
    "identity": "人员",
    "identities": "人员",
    "biometric consent": "生物识别同意",
    "biometric consents": "生物识别同意",
    "face enrollment": "人脸登记",
    "face enrollments": "人脸登记",
    "face template": "人脸模板",
    "face templates": "人脸模板",
    "enrollment event": "登记事件",
    "enrollment events": "登记事件",
    "enrollment photo": "登记照片",
    "enrollment photos": "登记照片",
    "one time code": "一次性验证码",
    "one time codes": "一次性验证码",
    "real id check": "实名核验",
    "real id checks": "实名核验",
    # --- cabinet screens
    "Too many wrong codes here. Try again later or contact support.": "此处输错取件码次数过多，请稍后再试或联系客服。",
    "That took too long: please type the code again.": "操作超时，请重新输入取件码。",
    "This code is not valid.": "取件码无效。",
    "Your compartment is already opening.": "您的格口已在打开。",
    "Compartment %(doors)s is opening.": "%(doors)s 号格口正在打开。",
    "Too many wrong PINs here. Try again later.": "此处输错 PIN 次数过多，请稍后再试。",
    "Badge or PIN not recognised.": "工号或 PIN 不正确。",
    "That took too long: please try again.": "操作超时，请重试。",
    "Nothing to collect here.": "此处没有需要收取的包裹。",
    "Opening %(count)d compartment: %(doors)s.": ["正在打开 %(count)d 个格口：%(doors)s。"],
    "Compartment %(doors)s is opening: put parcel %(parcel)s in and close the door.": "%(doors)s 号格口正在打开：请放入包裹 %(parcel)s 并关好柜门。",
    "Your compartment is opening.": "您的格口正在打开。",
    "Face not recognised: try again or use your pickup code.": "未能识别人脸：请重试或使用取件码。",
    "Please use your pickup code.": "请使用取件码。",
    "Face scan is paused here: use your pickup code.": "此处人脸识别已暂停：请使用取件码。",
    "Please try again.": "请重试。",
    "That took too long: please look at the camera again.": "操作超时，请重新看向摄像头。",
    "Face scan is paused here after several failures: use your pickup code.": "多次识别失败，此处人脸识别已暂停：请使用取件码。",
    "No parcel here can be opened by face: use your pickup code.": "此处没有可刷脸取出的包裹：请使用取件码。",
    "No drop-off is expected here for you.": "此处没有您的寄件预约。",
    "Too dark: the light is switching on, please look at the camera.": "光线太暗：正在开灯，请看向摄像头。",
    "No enrolled sender is expected here.": "此处没有已登记人脸的寄件人预约。",
    "Face not recognised: a drop-off needs the sender's verified face.": "未能识别人脸：寄件需要寄件人本人通过验证的人脸。",
    "Drop-off needs a real-name verified identity: verify your ID first.": "寄件需要实名认证：请先验证身份证件。",
    "Face not confirmed against your verified ID.": "人脸与您已验证的证件不符。",
    "The cabinet cannot do this right now. Please try again or contact support.": "柜机暂时无法完成此操作，请重试或联系客服。",
    # --- texts to recipients
    "Your parcel %(tracking)s": "您的包裹 %(tracking)s",
    "You can also open it with a face scan at the cabinet.": "您也可以在柜机前刷脸取件。",
    "Skip the code next time: %(link)s": "下次免输取件码：%(link)s",
    "Parcel %(tracking)s from %(carrier)s is ready at %(where)s. Pickup code: %(code)s. Collect it by %(deadline)s.": "%(carrier)s 的包裹 %(tracking)s 已到 %(where)s。取件码：%(code)s。请于 %(deadline)s 前取件。",
    "Need more time? %(extend)s": "需要延期？%(extend)s",
    "Reminder: parcel %(tracking)s waits for you at %(where)s until %(deadline)s. Use the pickup code from our first message, or your face.": "提醒：包裹 %(tracking)s 在 %(where)s 等您取件，截止 %(deadline)s。请使用第一条短信中的取件码或刷脸取件。",
    "Parcel %(tracking)s was not collected in time and goes back to %(carrier)s.": "包裹 %(tracking)s 未按时取件，将退回 %(carrier)s。",
    "%(code)s is your login code for the face-pickup web page (valid %(minutes)s min). It is not a pickup code and opens no locker. Never share it.": "%(code)s 是您登录刷脸取件网页的验证码（%(minutes)s 分钟内有效）。它不是取件码，不能打开柜门。请勿告诉他人。",
    # --- refusal reasons (face pipeline)
    "The photo is empty: take the picture again.": "照片是空的：请重新拍摄。",
    "The photo file is too large: send a smaller photo.": "照片文件太大：请发送较小的照片。",
    "Unsupported file: send a JPEG, PNG or WEBP photo.": "不支持的文件：请发送 JPEG、PNG 或 WEBP 照片。",
    "The photo has too many pixels: send a smaller photo.": "照片像素过多：请发送较小的照片。",
    "The photo could not be read: take the picture again.": "无法读取照片：请重新拍摄。",
    "Too dark: move somewhere brighter or switch on the light.": "光线太暗：请到明亮处或打开灯。",
    "Too bright: move out of direct light.": "光线太亮：请避开直射光。",
    "The face is washed out: avoid light from behind and try again.": "面部过曝：请避免逆光后重试。",
    "No face found: look straight at the camera.": "未检测到人脸：请正对摄像头。",
    "Two faces in the picture: only the person enrolling should be in the photo.": "照片中有两张人脸：照片中只能有登记本人。",
    "Move closer to the camera.": "请靠近摄像头。",
    "The photo is blurred: hold still and try again.": "照片模糊：请保持不动后重试。",
    "Something went wrong while reading this photo: please try again.": "读取照片时出错：请重试。",
    # --- identity services and views
    "Enter a phone number such as 13800138000, or +8613800138000 from abroad.": "请输入手机号码，例如 13800138000；境外号码请加国家代码，例如 +8613800138000。",
    "Give consent to biometric processing before sending photos; your pickup code works either way.": "发送照片前请先同意生物识别处理；无论是否同意，取件码都可以使用。",
    "Too many photos for one enrollment: delete your face data and start again.": "本次登记的照片过多：请删除人脸数据后重新开始。",
    "You already sent %(n)s good photos: that is enough.": "您已发送 %(n)s 张合格照片，已经足够。",
    "The code is wrong or has expired.": "验证码错误或已过期。",
    "Log in again.": "请重新登录。",
    "Tick the box to agree, or keep using your pickup code.": "请勾选同意，或继续使用取件码。",
    "Thank you. Now take a selfie.": "谢谢。现在请自拍一张。",
    "Consent withdrawn. Your face data is deleted (%(deleted)s face templates). Your pickup code still works.": "已撤回同意。您的人脸数据已删除（%(deleted)s 个人脸模板）。取件码仍然可用。",
    "Your face data is deleted (%(deleted)s face templates).": "您的人脸数据已删除（%(deleted)s 个人脸模板）。",
    "Choose a photo first.": "请先选择一张照片。",
    "Photo received: checking it now.": "已收到照片：正在检查。",
    # --- pages
    "Smart parcel lockers": "智能快递柜",
    "Face pickup": "刷脸取件",
    "Open your locker with your face": "刷脸打开快递柜",
    "Hello %(name)s.": "%(name)s，您好。",
    "What we store and why": "我们存储什么、为什么存储",
    "From your selfie we compute a <strong>face template</strong>: 128 numbers that describe your face. It is stored encrypted and used only to open lockers holding your parcels and to check your identity when you send a parcel.": "我们根据您的自拍计算出<strong>人脸模板</strong>：描述您面部的 128 个数字。模板加密存储，仅用于打开存放您包裹的柜门，以及在您寄件时核验身份。",
    "The photo itself is deleted %(retention_s)s seconds after it is processed.": "照片本身在处理后 %(retention_s)s 秒内删除。",
    "The photo itself is deleted as soon as it is processed.": "照片本身在处理后立即删除。",
    "Carriers and couriers never see your photo or template.": "快递公司和快递员永远看不到您的照片或模板。",
    "Face pickup is optional.": "刷脸取件是可选的。",
    "Your 6-digit pickup code always works.": "您的 6 位取件码始终可用。",
    "You can withdraw your consent and delete your face data here at any time; deletion is immediate.": "您可以随时在此撤回同意并删除人脸数据，删除立即生效。",
    "Your consent": "您的同意",
    "I agree that my face is processed to open parcel lockers as described above.": "我同意按上述说明处理我的人脸信息，用于打开快递柜。",
    "Give consent": "同意",
    "Or simply close this page: you will pick up with your code.": "也可以直接关闭本页：您将使用取件码取件。",
    "Status": "状态",
    "Checking your photo…": "正在检查您的照片…",
    "You are enrolled: look at the locker's camera to open it.": "登记成功：看向快递柜的摄像头即可开柜。",
    "Please retake your photo.": "请重新拍照。",
    "Take one to %(max_photos)s selfies.": "请自拍 1 到 %(max_photos)s 张。",
    "Photo %(n)s": "照片 %(n)s",
    "accepted": "已通过",
    "refused": "未通过",
    "checking": "检查中",
    "Your last photo was not used:": "您最近的一张照片未被采用：",
    "Take a selfie": "自拍",
    "Face the camera in good light, alone in the picture. One to %(max_photos)s photos.": "请在光线充足处正对摄像头，画面中只有您一人。1 到 %(max_photos)s 张照片。",
    "Put your face inside the oval": "请将面部置于椭圆框内",
    "Take another photo": "再拍一张",
    "Start camera": "打开摄像头",
    "Take photo": "拍照",
    "No camera? Upload a photo instead": "没有摄像头？改为上传照片",
    "JPEG, PNG or WEBP, up to %(max_mb)s MB.": "JPEG、PNG 或 WEBP，最大 %(max_mb)s MB。",
    "Upload photo": "上传照片",
    "Your face data": "您的人脸数据",
    "You have %(n)s face template stored.": ["您已存储 %(n)s 个人脸模板。"],
    "Delete my face data": "删除我的人脸数据",
    "Deletes your face templates and photos. Your consent stays: you can take a new selfie at once.": "删除您的人脸模板和照片。您的同意仍然有效：可以马上重新自拍。",
    "Withdraw consent and delete my face data": "撤回同意并删除我的人脸数据",
    "Deletes your face data and ends your consent: face pickup stops until you agree again.": "删除您的人脸数据并结束同意：在您再次同意之前，无法刷脸取件。",
    "Either way, your pickup code keeps working.": "无论哪种方式，取件码都继续可用。",
    "Delete your face data?": "删除您的人脸数据？",
    "Your face templates and photos are deleted now. Your consent stays, so you can take a new selfie straight away.": "您的人脸模板和照片将立即删除。您的同意仍然有效，可以马上重新自拍。",
    "Yes, delete": "确定删除",
    "Cancel": "取消",
    "Withdraw your consent?": "撤回您的同意？",
    "Your face data is deleted now and your consent ends: lockers stop opening for your face until you agree again. Your pickup code keeps working.": "您的人脸数据将立即删除，同意随之结束：在您再次同意之前，快递柜不再为您的人脸开门。取件码继续可用。",
    "Yes, withdraw": "确定撤回",
    "Log out": "退出登录",
    "Sending your photo…": "正在发送照片…",
    "The photo was not accepted.": "照片未被接受。",
    "The photo could not be sent: check your connection.": "照片发送失败：请检查网络连接。",
    "This browser cannot use the camera here: upload a photo instead.": "此浏览器无法在这里使用摄像头：请改为上传照片。",
    "No camera access: allow it, or upload a photo instead.": "无法访问摄像头：请允许访问，或改为上传照片。",
    "The camera is not ready yet.": "摄像头尚未就绪。",
    "Log in to face pickup": "登录刷脸取件",
    "Log in with your phone": "用手机号登录",
    "Enter the phone number your parcels are sent to. We text you a 6-digit login code.": "请输入收件手机号，我们将发送 6 位登录验证码。",
    "Phone number": "手机号码",
    "A mainland China number needs no +86.": "中国大陆号码无需输入 +86。",
    "Send me a code": "发送验证码",
    "Enter your code": "输入验证码",
    "If %(phone)s is the number of a parcel recipient here, a 6-digit login code is on its way. It is not a pickup code.": "如果 %(phone)s 是这里的收件人号码，6 位登录验证码正在发送中。它不是取件码。",
    "Login code": "登录验证码",
    "Log in": "登录",
    "Use another number or send a new code": "换一个号码或重新发送验证码",
}


_QUOTED = re.compile(r'^(?:msgid(?:_plural)?|msgstr(?:\[\d\])?)?\s*"(.*)"$')


def _unquote(lines: list[str]) -> str:
    parts = [_QUOTED.match(line) for line in lines]
    text = "".join(part.group(1) for part in parts if part is not None)
    return text.encode().decode("unicode_escape").encode("latin-1").decode("utf-8")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _unfuzzy(line: str) -> str:
    """`#, fuzzy, python-format` -> `#, python-format`; `#, fuzzy` -> `#,` (dropped)."""
    if not line.startswith("#,"):
        return line
    flags = [flag.strip() for flag in line[2:].split(",") if flag.strip() != "fuzzy"]
    return "#, " + ", ".join(flags) if flags else "#,"


def fill(po: Path = PO) -> list[str]:
    blocks = po.read_text(encoding="utf-8").split("\n\n")
    missing: list[str] = []
    out = []
    for block in blocks:
        lines = block.splitlines()
        ids = [i for i, line in enumerate(lines) if line.startswith("msgid ")]
        if not ids:
            out.append(block)
            continue
        start = ids[0]
        end = next(i for i, line in enumerate(lines) if line.startswith(("msgid_plural", "msgstr")))
        msgid = _unquote(lines[start:end])
        if msgid == "":
            out.append(block)
            continue
        # Filled entries are no longer fuzzy matches of an older text.
        head = [_unfuzzy(line) for line in lines[:start] if not line.startswith("#|")]
        head = [line for line in head if line != "#,"]
        plural_at = next(
            (i for i, line in enumerate(lines) if line.startswith("msgid_plural")), None
        )
        translation = ZH.get(msgid)
        if translation is None:
            missing.append(msgid)
            out.append(block)
            continue
        body = lines[start:end]
        if plural_at is not None:
            msgstr_at = next(i for i, line in enumerate(lines) if line.startswith("msgstr"))
            body += lines[plural_at:msgstr_at]
            forms = translation if isinstance(translation, list) else [translation]
            body += [f"msgstr[{n}] {_quote(form)}" for n, form in enumerate(forms)]
        else:
            assert isinstance(translation, str), msgid
            body.append(f"msgstr {_quote(translation)}")
        out.append("\n".join(head + body))
    po.write_text("\n\n".join(out), encoding="utf-8")
    return missing


if __name__ == "__main__":
    left = fill()
    for msgid in left:
        print(f"no translation: {msgid!r}", file=sys.stderr)
    sys.exit(1 if left else 0)

Return-Path: <olivia.grant@lumen.example>
Delivered-To: support@example.com
From: Olivia Grant <olivia.grant@lumen.example>
To: support@example.com
Subject: App crashes on startup after update
Message-ID: <CAOg-crash-7@lumen.example>
Date: Mon, 23 Nov 2026 22:39:53 +0000
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Hi,

since yesterday's update the app crashes right after the splash screen on my phone.
I already reinstalled it. Any idea?

Olivia

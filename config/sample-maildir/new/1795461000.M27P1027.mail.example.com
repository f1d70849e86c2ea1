Return-Path: <carmen.vidal@buzon.example>
Delivered-To: soporte@example.com
From: Carmen Vidal <carmen.vidal@buzon.example>
To: soporte@example.com
Subject: =?UTF-8?Q?Cambio_de_direcci=C3=B3n_de_env=C3=ADo?=
Message-ID: <CACv-dir-88@buzon.example>
Date: Mon, 23 Nov 2026 19:09:53 +0000
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Hola,

me he mudado y necesito cambiar la dirección de envío de mi suscripción.
La nueva es Calle Mayor 12, 28013 Madrid.

Gracias,
Carmen

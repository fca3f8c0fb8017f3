"""Models of the KServe V2 / Open Inference Protocol REST messages that ``/v2`` speaks.

Only the envelope is validated here; tensor data is checked with numpy in
``service.v2``. Unknown fields are accepted, as the protocol allows extensions.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from service.bundle.manifest import ModelSpec

_DATA_SCHEMA: dict[str, Any] = {
    "description": "tensor elements in row-major order, flat or nested; omitted with binary_data_size",
    "type": "array",
    "items": {},
}


class _Message(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)


class RequestInput(_Message):
    name: str = Field(max_length=256)
    shape: list[Annotated[int, Field(ge=0, le=2**31)]] = Field(max_length=8)
    datatype: str = Field(max_length=16, description="FP32 is the only one accepted")
    parameters: dict[str, Any] | None = Field(
        default=None, description="binary_data_size: bytes after the header"
    )
    data: Annotated[list[Any] | None, WithJsonSchema(_DATA_SCHEMA)] = None


class RequestOutput(_Message):
    name: str = Field(max_length=256)
    parameters: dict[str, Any] | None = Field(default=None, description="binary_data: true for raw bytes")


class InferRequest(_Message):
    id: str | None = Field(default=None, max_length=256)
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1, max_length=16)
    outputs: list[RequestOutput] | None = Field(default=None, max_length=16)


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[float] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelParameters(BaseModel):
    spec: ModelSpec = Field(description="Seqcast's description of the model (the manifest's spec, as it is)")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]
    parameters: ModelParameters | None = Field(default=None, description="extra fields the protocol allows")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class V2Error(BaseModel):
    error: str


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool
